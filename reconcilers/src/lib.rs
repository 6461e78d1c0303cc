//! interlock's pure decision core.
//!
//! Everything here is a function of its inputs: no I/O, no clock, no Docker client, no async
//! runtime. The runtime shell (the `interlock` crate in `src/`) reads files and talks to Docker,
//! then hands plain values to this crate and carries out what it decides.
//!
//! # Layout
//! - [`config`]: Interlock 2's TOML, parsed key by key (case-insensitively, as Interlock did)
//!   into typed values with Interlock's defaults, and validated. Every problem is a
//!   [`config::Diagnostic`] carrying file, line, column and key.
//! - [`swarm`]: the plain data the core reasons about (nodes, services, configs, events), as the
//!   shell's Docker adapter reads them. No Docker client types leak in here.
//! - [`placement`]: Swarm placement constraints and preferences, parsed and matched against nodes.

pub mod config;
pub mod desired;
pub mod labels;
pub mod placement;
pub mod plan;
pub mod render;
pub mod routes;
pub mod swarm;
