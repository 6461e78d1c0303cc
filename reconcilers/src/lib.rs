//! interlock's pure decision core.
//!
//! Everything here is a function of its inputs: no I/O, no clock, no Docker client, no async
//! runtime. The runtime shell (the `interlock` crate in `src/`) reads files and talks to Docker,
//! then hands plain values to this crate and carries out what it decides.
//!
//! # Layout
//! Layers, bottom to top; a module uses only modules of lower layers, never one of its own layer
//! or above (`tests/layers.rs` checks it):
//!
//! `ownership, observed, token` → `labels, placement, leader` → `config` → `routes` → `acme` →
//! `proxy` → `node_labels` → `desired` → `plan`
//!
//! 1. [`ownership`], [`observed`], [`token`]: the ground, using no other module.
//!    - [`ownership`]: what marks an object as interlock's (every `com.docker.interlock.*`
//!      label, `is_owned`), the hash interlock records (`sha256_hex`), Swarm's limits.
//!    - [`observed`]: the plain data the core reasons about, as the shell's Docker adapter
//!      reads it ([`observed::Observed`]: nodes, services, tasks, networks, configs, events),
//!      and the plain definitions it writes. No Docker client types leak in here.
//!    - [`token`]: the extensions' credentials (an HMAC per extension under a manager-only key).
//! 2. [`labels`], [`placement`], [`leader`]:
//!    - [`labels`]: every `com.docker.lb.*` label of an app service, parsed and validated (hosts,
//!      port, network, service cluster, route options); a bad value is a quarantine reason.
//!    - [`placement`]: Swarm placement constraints and preferences, parsed and matched against
//!      nodes.
//!    - [`leader`]: which core replica writes (the one on the Swarm's Raft leader).
//! 3. [`config`]: Interlock 2's TOML, parsed key by key (case-insensitively, as Interlock did)
//!    into typed values with Interlock's defaults, one module per table, and validated. Every
//!    problem is a [`config::Diagnostic`] carrying file, line, column and key. [`config::ProxyKind`]
//!    is the config's.
//! 4. [`routes`]: per service cluster, the hosts it serves and the task addresses behind them,
//!    from the parsed labels, networks and running tasks; quarantined services with reasons.
//! 5. [`acme`]: automatic HTTPS, decided: per host wanting an ACME certificate (its owner's
//!    `ssl_acme`), `Order`, `Renew` or `Keep`; certificate objects to retire; the route tables
//!    amended to serve current certificates; the HTTP-01 answers that may be rendered. The time
//!    comes in as a value.
//! 6. [`proxy`]: what differs by proxy kind, one module per kind (nginx, HAProxy): the renderer,
//!    TLS secret layout, passthrough support, check command, and the whole layout of a hitless
//!    proxy task ([`proxy::hitless_layout`]).
//! 7. [`node_labels`]: `[NodeLabels]`: the labels declared per node (hostname, glob or ID), the
//!    keys interlock records as its own on each node, and the one label update per node
//!    ([`node_labels::NodeUpdate`]); drift of managed node labels.
//! 8. [`desired`]: from the config and an observation, the objects that must exist per extension
//!    (extension service, proxy service, proxy config, routes, proxy kind, hitless delivery);
//!    spec hashes.
//! 9. [`plan`]: the diff between desired and observed, the writes per cluster (node label updates
//!    wrapped as actions), and its text; for hitless clusters, which changes reload running
//!    proxies in place and which roll them; drift (hand edits of managed fields), reverted or
//!    reported.
//!
//! Test data, above them all and used by tests only: `fixtures` (tests and the `fixtures`
//! feature only), the walk-through as plain data; `routes::test_tables`, route tables built by
//! hand for the renderers' golden tests.

pub mod acme;
pub mod config;
pub mod desired;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod labels;
pub mod leader;
pub mod node_labels;
pub mod observed;
pub mod ownership;
pub mod placement;
pub mod plan;
pub mod proxy;
pub mod routes;
pub mod token;
