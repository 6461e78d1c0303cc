//! Automatic HTTPS, the shell's side (`docs/design/acme.md`, "Who orders"): the ACME client that
//! orders certificates over HTTP-01 ([`client`]), the sealing of ACME material into configs any
//! active core can read back ([`seal`]), the orderer the controller runs while this replica
//! writes ([`orderer`], behind a small seam over the client), the state it shares with the
//! passes, `/status` and the metrics ([`state`]), and the removal of retired certificates
//! ([`retire`]). The pure core (`reconcilers::acme`) decides which hosts to order, renew, keep or
//! retire, and names and labels interlock's ACME objects; this module only does what it is told.
//!
//! Its own modules: [`der`] (a certificate's `notAfter`) and [`seal`] are leaves; [`client`]
//! uses `der`; [`state`] uses `seal`; [`orderer`] uses all of them and the swarm seam.

pub mod client;
pub mod der;
pub mod orderer;
pub mod retire;
pub mod seal;
pub mod state;

pub use client::{AccountCredentials, AcmeClient, AcmeError, Http01Answer, Issued, PendingOrder};
pub use orderer::{Ca, CaAccount, CaOrder, Client, Orderer};
pub use seal::{SealError, seal, unseal};
pub use state::{AcmeState, HostStatus, OrderState};
