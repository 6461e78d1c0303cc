//! interlock's runtime shell: everything that touches the outside world.
//!
//! The decisions live in the `reconcilers` crate (pure, no I/O). This crate reads files, talks to
//! Docker, runs the loop and prints reports.
//!
//! # Layout
//! - [`context`]: what the running operator shares (swarm, proxy checker, status), built once in
//!   `main.rs`, the composition root.
//! - [`swarm`]: the `Swarm` trait, the seam between the loop and Docker.
//! - [`docker`]: the Docker adapter, the only module that knows bollard.
//! - [`reconcile`]: one pass (observe, plan, check, write) with per-cluster writers and backoff.
//! - [`controller`]: the loop behind `interlock run` (triggers, reloads, shutdown).
//! - [`proxycheck`]: the real `nginx -t` / `haproxy -c` on every config before a rollout.
//! - [`status`]: `/health`, `/ready`, `/status` and `/metrics` on `ListenAddr`, logging of state
//!   changes, and the table `interlock status` prints.
//! - [`metrics`]: the Prometheus metrics (a registry in [`context::Context`]), served as
//!   `/metrics`.
//! - [`delivery`]: the core's side of hitless updates: configs served to extensions (the API on
//!   `ListenAddr`) and their proxy tasks' reports.
//! - [`agent`]: `interlock agent`, the per-node statistics agent behind the `carbon` plug-in
//!   (`agent/`: the loop and its settings, Interlock 0.3's series, the proxies' status pages).
//! - [`extension`]: `interlock extension`, the node-local side: writes served configs into the
//!   proxy tasks on its node, checks them with the task's binary, reloads them (`extension/`:
//!   the loop, settings, vetting, the signed client of the core, fetching, applying, reports).
//! - [`engine`]: the `NodeEngine` trait, what `agent` and `extension` ask of their node's
//!   engine (implemented by the Docker adapter), with its plain types and error.
//! - [`plugins`]: plug-ins fed with Docker's and interlock's events (Interlock 0.3's `example`,
//!   `carbon`), each on its own task behind a bounded queue ([`plugins::Dispatcher`]).
//! - [`preflight`]: the text that `validate` and `check` print, built from plain values.
//! - [`memory`]: freed heap pages handed back to the kernel after each pass.
//! - `main.rs`: the command line, logging set-up, exit codes (the only place `anyhow` is used).

pub mod agent;
pub mod context;
pub mod controller;
pub mod delivery;
pub mod docker;
pub mod engine;
pub mod extension;
pub mod memory;
#[cfg(test)]
mod memory_swarm;
pub mod metrics;
pub mod plugins;
pub mod preflight;
pub mod proxycheck;
pub mod reconcile;
pub mod status;
pub mod swarm;
