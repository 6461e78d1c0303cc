//! interlock's runtime shell: everything that touches the outside world.
//!
//! The decisions live in the `reconcilers` crate (pure, no I/O). This crate reads files, talks to
//! Docker and prints reports.
//!
//! # Layout
//! - [`docker`]: the Docker adapter, the only module that knows bollard.
//! - [`report`]: the text that `validate` and `check` print, built from plain values.
//! - `main.rs`: the command line (`validate`, `check`), logging set-up, exit codes.

pub mod controller;
pub mod docker;
pub mod proxycheck;
pub mod reconcile;
pub mod report;
pub mod status;
