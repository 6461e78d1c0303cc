//! interlock's runtime shell: everything that touches the outside world.
//!
//! The decisions live in the `reconcilers` crate (pure, no I/O). This crate reads files, talks to
//! Docker, runs the loops and prints reports. It holds three programs over shared adapters: the
//! core (`interlock run`), the extension (`interlock extension`) and the statistics agent
//! (`interlock agent`).
//!
//! # Layout, bottom-up
//! Each layer uses only those below it, and no module uses another of its own layer
//! (`tests/layers.rs` checks it).
//! 1. Leaves:
//!    - [`retry`]: the one backoff policy every loop uses (doubling, cap, jitter), and bounded
//!      windows.
//!    - [`allocator`]: freed heap pages handed back to the kernel after each pass.
//!    - [`shutdown`]: SIGTERM and SIGINT, how every long-running program is told to stop.
//! 2. The seams and the plain types the programs share:
//!    - [`swarm`]: the `Swarm` trait and its `SwarmError`, the seam between the core (its loop,
//!      and the commands' set-up: engine, join token, own container, every engine event) and a
//!      swarm (and, for tests, an in-memory swarm with fault injection).
//!    - [`engine`]: the `NodeEngine` trait, what `agent` and `extension` ask of their node's
//!      engine, with its plain types and error.
//!    - [`extension_api`]: what the core and its hitless extensions say to each other (a proxy
//!      task's report, the writer header), shared by both programs.
//!    - [`preflight`]: the text that `validate` and `check` print, built from plain values.
//! 3. [`carbon`]: the Carbon (Graphite) sink, its settings and line protocol, shared by the
//!    core's `carbon` plug-in and the agent.
//! 4. The three programs and the Docker adapter, none of which uses another:
//!    - [`core`]: the core's program (`interlock run`, `plan`, `apply`; `start`'s plug-ins),
//!      over `swarm`. Its own modules are layers too: `pass_report`, `proxycheck`, `delivery`,
//!      `status`, `plugins`, `acme` → `metrics` → `server` → `context` → `reconcile` (pass, culprit,
//!      write, role, agent_service) → `controller`.
//!    - [`extension`]: `interlock extension`, the node-local side: writes served configs into the
//!      proxy tasks on its node, checks them with the task's binary, reloads them (`extension/`:
//!      the loop, settings, vetting, the signed client of the core, fetching, applying), over
//!      `engine`.
//!    - [`agent`]: `interlock agent`, the per-node statistics agent behind the `carbon` plug-in
//!      (`agent/`: the loop and its settings, Interlock 0.3's series, the proxies' status pages),
//!      over `engine` and `carbon`.
//!    - [`docker`]: the Docker adapter, the only module that knows bollard; implements `Swarm`
//!      and `NodeEngine`.
//!
//! The binary (`main.rs`, `cli/`: the command line, one file per command, logging set-up, exit
//! codes, and the composition root that connects to Docker) uses all of them; it is the only
//! place `anyhow` is used.

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
