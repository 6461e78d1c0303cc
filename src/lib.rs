//! interlock's runtime shell: everything that touches the outside world.
//!
//! The decisions live in the `reconcilers` crate (pure, no I/O). This crate reads files, talks to
//! Docker, runs the loops and prints reports. It holds three programs over shared adapters: the
//! core (`interlock run`), the extension (`interlock extension`) and the statistics agent
//! (`interlock agent`).
//!
//! # Layout, bottom-up
//! Each layer uses only those below it.
//! - [`retry`]: the one backoff policy every loop uses (doubling, cap, jitter), and bounded
//!   windows.
//! - [`allocator`]: freed heap pages handed back to the kernel after each pass.
//! - [`swarm`]: the `Swarm` trait and its `SwarmError`, the seam between the core's loop and a
//!   swarm (and, for tests, an in-memory swarm with fault injection).
//! - [`docker`]: the Docker adapter, the only module that knows bollard; implements `Swarm`.
//! - [`engine`]: the `NodeEngine` trait, what `agent` and `extension` ask of their node's
//!   engine (implemented by the Docker adapter), with its plain types and error.
//! - [`extension_api`]: what the core and its hitless extensions say to each other (a proxy
//!   task's report, the writer header), shared by both programs.
//! - [`core`]: the core's program, over `swarm` (and `docker` for its plug-ins' engine events):
//!   `pass_report`, `proxycheck`, `delivery`, `status`, `metrics`, `plugins`, `server`,
//!   `context`, `reconcile` (pass, culprit, write, role, agent_service), `controller`.
//! - [`extension`]: `interlock extension`, the node-local side: writes served configs into the
//!   proxy tasks on its node, checks them with the task's binary, reloads them (`extension/`:
//!   the loop, settings, vetting, the signed client of the core, fetching, applying). Another
//!   program, on top of `engine`.
//! - [`agent`]: `interlock agent`, the per-node statistics agent behind the `carbon` plug-in.
//!   (`agent/`: the loop and its settings, Interlock 0.3's series, the proxies' status pages).
//!   Another program, on top of `engine`.
//! - [`preflight`]: the text that `validate` and `check` print, built from plain values.
//! - `main.rs`: the command line, logging set-up, exit codes (the only place `anyhow` is used).

pub mod agent;
pub mod allocator;
pub mod carbon;
pub mod core;
pub mod docker;
pub mod engine;
pub mod extension;
pub mod extension_api;
pub mod preflight;
pub mod retry;
pub mod shutdown;
pub mod swarm;
