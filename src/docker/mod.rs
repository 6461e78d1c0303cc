//! The Docker adapter: the only module that knows bollard (and, in `tasks`, the Engine's raw
//! task JSON). Everything outside it sees `reconcilers::observed` types and the seams' plain
//! types: the core's loop and the commands' set-up go through the [`Swarm`](crate::swarm::Swarm)
//! seam it implements (`swarm.rs`), the node-local programs through
//! [`NodeEngine`](crate::engine::NodeEngine) (`node.rs`); outside the adapter, the command line
//! only connects ([`DockerClient::connect`]).
//!
//! It connects to the engine named by the config (or `DOCKER_HOST`), translates between
//! bollard's generated models and the core's plain types, classifies errors into what the caller
//! can act on, and bounds every short call with a timeout (bollard's own timeout covers only
//! response headers, and the events stream has none).
//!
//! # Files
//! - `client.rs`: [`DockerClient`] (connect, one method per call, the call timeout) and
//!   [`RequestCounters`], which each call adds itself to as a read or a write.
//! - `convert.rs`: bollard models to and from `reconcilers::observed` types (nodes, services,
//!   networks, configs, events), and `overlay`, which lays a definition's managed fields over a
//!   service's current spec for an update. Pure.
//! - `error.rs`: [`DockerError`] and the classification of bollard's errors (and the raw task
//!   reader's) into it, every case named.
//! - `node.rs`: [`DockerClient`] as the node-local programs'
//!   [`NodeEngine`](crate::engine::NodeEngine) (what `interlock extension` and `interlock agent`
//!   do to the containers on their own node), its errors as
//!   [`EngineError`](crate::engine::EngineError)s, the container labels Swarm sets, and the tar
//!   archive that writes files into a container.
//! - `stats.rs`: what `interlock agent` reads from its own node's engine: the running containers
//!   and one reading of a container's counters (as `crate::engine`'s
//!   [`RunningContainer`](crate::engine::RunningContainer) and
//!   [`ContainerStats`](crate::engine::ContainerStats)).
//! - `own_container.rs`: interlock's own container, when it runs as a Swarm task (the image
//!   the core runs from, its service and task: which replica it is), as the seam's
//!   [`OwnContainer`](crate::swarm::OwnContainer).
//! - `engine_events.rs`: every event of an engine, unfiltered (the seam's
//!   [`EngineEvent`](crate::swarm::EngineEvent)), for the plug-ins of `interlock start`.
//! - `swarm.rs`: [`DockerClient`] as the [`Swarm`](crate::swarm::Swarm) (the loop's seam, and
//!   the manager-side facts the commands set up with: engine, join token, own container, every
//!   event), its errors as
//!   [`SwarmError`](crate::swarm::SwarmError)s, and [`managed_label`], the filter for the
//!   operator's own objects.
//! - `tasks.rs`: `GET /tasks` without bollard, whose `Task` model drops the task IPs.
//! - `timeouts.rs`: how long the adapter waits for the engine (bollard's backstop, each call's
//!   bound).

mod client;
mod convert;
mod engine_events;
mod error;
mod node;
mod own_container;
mod stats;
mod swarm;
mod tasks;
mod timeouts;

pub use client::{DockerClient, RequestCounters, SecretInfo};
pub use error::DockerError;
pub use swarm::managed_label;
