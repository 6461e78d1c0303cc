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
//! - [`labels`]: every `com.docker.lb.*` label of an app service, parsed and validated (hosts,
//!   port, network, service cluster, route options); a bad value is a quarantine reason.
//! - [`routes`]: per service cluster, the hosts it serves and the task addresses behind them,
//!   from the parsed labels, networks and running tasks; quarantined services with reasons.
//! - [`proxy`]: what differs by proxy kind, one module per kind (nginx, HAProxy): the renderer,
//!   default config path, TLS secret layout, passthrough support, check and reload commands.
//! - [`desired`]: from the config and an observation, the objects that must exist per extension
//!   (extension service, proxy service, proxy config, routes, proxy kind); ownership labels and
//!   spec hashes.
//! - [`node_labels`]: `[NodeLabels]`: the labels declared per node (hostname or glob), the keys
//!   interlock records as its own on each node, and the one label update per node; drift of
//!   managed node labels.
//! - [`plan`]: the diff between desired and observed, the writes per cluster, and its text; for
//!   hitless clusters, which changes reload running proxies in place and which roll them; node
//!   label updates; drift (hand edits of managed fields), reverted or reported.
//! - [`leader`]: which core replica writes (the one on the Swarm's Raft leader).
//! - [`token`]: the extensions' credentials (an HMAC per extension under a manager-only key).
//! - `fixtures` (tests and the `fixtures` feature only): the walk-through as test data.
//!
//! `labels` uses no other module of the crate; `routes` reads labels only through it.

pub mod config;
pub mod desired;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod labels;
pub mod leader;
pub mod node_labels;
pub mod placement;
pub mod plan;
pub mod proxy;
pub mod routes;
pub mod swarm;
pub mod token;
