//! The core: `interlock run` (and `plan`, `apply`), the reconciling loop over the swarm, and
//! what it serves. It sees the swarm only through the [`Swarm`](crate::swarm::Swarm) seam.
//!
//! # Layout, bottom-up
//! Each layer uses only those below it, and no module uses another of its own layer
//! (`tests/layers.rs`, `CORE_LAYERS`, checks it).
//! 1. Leaves:
//!    - [`pass_report`]: what a pass did ([`pass_report::PassReport`]), read by the status, the
//!      metrics and the plug-ins.
//!    - [`proxycheck`]: the real `nginx -t` / `haproxy -c` on every config before a rollout.
//!    - [`delivery`]: the core's side of hitless updates: configs served to extensions (the API
//!      on `ListenAddr`) and their proxy tasks' reports.
//!    - [`status`]: what the loop knows (recorded after each pass, logged when it changes), its
//!      liveness and readiness, and `interlock status` (the client and its table).
//!    - [`plugins`]: plug-ins fed with Docker's and interlock's events (Interlock 0.3's
//!      `example`, `carbon`), each on its own task behind a bounded queue
//!      ([`plugins::Dispatcher`]); also hosted by `interlock start`.
//!    - [`acme`]: automatic HTTPS, the shell's side: the ACME client (the only module that knows
//!      the ACME crate), sealing ACME material, its objects' names and labels.
//! 2. [`metrics`]: the Prometheus metrics, updated by the loop and served as `/metrics`.
//! 3. [`server`]: the HTTP server on `ListenAddr`: `/health`, `/ready`, `/status`, `/metrics`
//!    and the extensions' API.
//! 4. [`context`]: what the running core shares (swarm, proxy checker, status, deliveries,
//!    plug-ins, metrics), built once by the binary's composition root (`cli/context.rs`).
//! 5. [`reconcile`]: the passes (observe, plan, check, write), by job.
//! 6. [`controller`]: the loop behind `interlock run` (triggers, reloads, shutdown).

pub mod acme;
pub mod context;
pub mod controller;
pub mod delivery;
pub mod metrics;
pub mod pass_report;
pub mod plugins;
pub mod proxycheck;
pub mod reconcile;
pub mod server;
pub mod status;
