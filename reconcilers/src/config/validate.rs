//! Rules that span extensions: unique service names, and published ports that cannot coexist.

use std::collections::BTreeMap;

use crate::observed::PublishMode;

use super::diagnostic::Diagnostics;
use super::{Config, Extension};

pub(super) fn check_extensions(diagnostics: &Diagnostics<'_>, config: &Config) {
    check_unique_service_names(diagnostics, config);
    check_published_ports(diagnostics, config);
}

/// Every extension and proxy service name is a distinct Swarm service.
fn check_unique_service_names(diagnostics: &Diagnostics<'_>, config: &Config) {
    let mut owners: BTreeMap<&str, (&Extension, &str)> = BTreeMap::new();
    for ext in in_file_order(config) {
        for key in ["ServiceName", "ProxyServiceName"] {
            let name = if key == "ServiceName" { &ext.service_name } else { &ext.proxy_service_name };
            match owners.get(name.as_str()) {
                Some((first, first_key)) => diagnostics.error(
                    ext.positions.of(key),
                    &format!("Extensions.{}.{key}", ext.name),
                    format!(
                        "service name {name:?} is already the {first_key} of extension {:?}; every extension and proxy service needs its own name",
                        first.name
                    ),
                ),
                None => {
                    owners.insert(name, (ext, key));
                }
            }
        }
    }
}

/// An ingress-mode port is reserved on every node, so no other extension may publish it, in
/// either mode. Host-mode ports may repeat: each proxy binds them on its own nodes.
fn check_published_ports(diagnostics: &Diagnostics<'_>, config: &Config) {
    let mut claimed: BTreeMap<u16, (&Extension, &str)> = BTreeMap::new();
    for ext in in_file_order(config) {
        for key in ["PublishedPort", "PublishedSSLPort"] {
            let port = if key == "PublishedPort" { ext.published_port } else { ext.published_ssl_port };
            if port == 0 {
                continue;
            }
            if let Some((first, first_key)) = claimed.get(&port) {
                let either_ingress =
                    ext.publish_mode == PublishMode::Ingress || first.publish_mode == PublishMode::Ingress;
                if either_ingress {
                    diagnostics.error(
                        ext.positions.of(key),
                        &format!("Extensions.{}.{key}", ext.name),
                        format!(
                            "port {port} is already the {first_key} of extension {:?}, and an ingress-mode port is reserved on every node; use another port or PublishMode = \"host\" for both",
                            first.name
                        ),
                    );
                }
            } else {
                claimed.insert(port, (ext, key));
            }
        }
    }
}

fn in_file_order(config: &Config) -> Vec<&Extension> {
    let mut extensions: Vec<_> = config.extensions.values().collect();
    extensions.sort_by_key(|e| e.positions.header.start);
    extensions
}
