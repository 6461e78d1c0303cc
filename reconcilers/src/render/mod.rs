//! Proxy configuration files, rendered from a cluster's routes and its extension's `Config`.
//! Text in, text out: the same inputs always give the same bytes, so a content hash names them.

pub mod haproxy;
pub mod nginx;
