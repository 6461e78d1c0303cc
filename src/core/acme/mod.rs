//! Automatic HTTPS, the shell's side (`docs/design/acme.md`, "Who orders"): the ACME client that
//! orders certificates over HTTP-01 ([`client`]), the sealing of ACME material into configs any
//! active core can read back ([`seal`]), and the names and labels of interlock's ACME objects
//! ([`names`]). The pure core (`reconcilers::acme`) decides which hosts to order, renew, keep or
//! retire; this module only does what it is told, and knows nothing of Docker: the orderer (run
//! by the controller while this replica writes) stores what it returns through the swarm seam.
//!
//! Its own modules: [`der`] (a certificate's `notAfter`) and [`names`] are leaves; [`client`]
//! uses them; [`seal`] uses nothing.

pub mod client;
pub mod der;
pub mod names;
pub mod seal;

pub use client::{AccountCredentials, AcmeClient, AcmeError, Http01Answer, Issued, PendingOrder};
pub use seal::{SealError, seal, unseal};
