//! The bottom of the core: what marks an object as interlock's, how interlock hashes what it
//! writes, and Swarm's limits. Every `com.docker.interlock.*` label key lives here, whichever
//! module writes it. Uses no other module of the crate.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Marks every object the operator created. Objects without it are never changed or deleted.
pub const LABEL_MANAGED_BY: &str = "com.docker.interlock.managed-by";
pub const MANAGED_BY: &str = "interlock";
/// Which extension an object belongs to.
pub const LABEL_EXTENSION: &str = "com.docker.interlock.extension";
/// `extension`, `proxy`, `proxy-config` or `network`.
pub const LABEL_ROLE: &str = "com.docker.interlock.role";
/// sha256 of the desired spec the object was written from.
pub const LABEL_SPEC_HASH: &str = "com.docker.interlock.spec-hash";
/// On proxy configs: `nginx` or `haproxy`, for people reading `docker config inspect`. Written,
/// never parsed: the kind travels in the desired state and the plan.
pub const LABEL_PROXY_KIND: &str = "com.docker.interlock.proxy-kind";
/// On services: the fields the operator manages (`Field::join`), for people and `check`; the
/// spec hash covers them, so a change of the set is one update.
pub const LABEL_MANAGED_FIELDS: &str = "com.docker.interlock.managed-fields";
/// On services: a JSON list of the TOML-declared label keys (`Labels`, `ProxyLabels`) the
/// operator wrote, so that a key removed from the TOML is removed from the service and labels
/// added by hand are not.
pub const LABEL_MANAGED_LABELS: &str = "com.docker.interlock.managed-labels";
/// Every label key the operator owns outright starts with this.
pub const OWN_LABEL_PREFIX: &str = "com.docker.interlock.";
/// Environment variables the operator sets start with this; others are the operator's by hand.
pub const OWN_ENV_PREFIX: &str = "INTERLOCK_";
/// On hitless proxy services: the hash of the config their running tasks are to serve. Written
/// by a label-only update (no task restarts), so the plan sees a delivered config as converged.
pub const LABEL_CONFIG_HASH: &str = "com.docker.interlock.config-hash";
/// On a hitless proxy service: the generation of the config its tasks serve (the delivery's
/// generation), recorded with [`LABEL_CONFIG_HASH`] so that a new active replica (or a
/// restarted core) continues the count instead of starting again.
pub const LABEL_CONFIG_GENERATION: &str = "com.docker.interlock.config-generation";
/// On a proxy service: the secrets its tasks could not load in the role a tenant's TLS label
/// gave them (a secret holding no certificate, key or CA: `proxy::secret_blame`), as
/// comma-separated `ROLE:ID` (`cert`, `key`, `ca`). Every service using one of them so stays
/// quarantined, whichever replica writes and after a restart; a secret re-created under the
/// same name has another ID and is judged afresh.
pub const LABEL_UNLOADABLE_SECRETS: &str = "com.docker.interlock.unloadable-secrets";
/// On an extension service written by a core running as a Swarm service: that service's name,
/// so a core run by hand beside it knows a writer runs (`leader::Identity::ByHand`).
pub const LABEL_CORE_SERVICE: &str = "com.docker.interlock.core-service";
/// Interlock's own marker on proxy services, kept so `docker service ls -f label=type=...` works.
pub const LABEL_TYPE: &str = "type";
pub const TYPE_PROXY: &str = "com.docker.interlock.core.proxy";
pub const TYPE_EXTENSION: &str = "com.docker.interlock.core.extension";
/// On nodes: a JSON list of the label keys interlock manages there (the keys `[NodeLabels]`
/// declared when it last wrote the node).
pub const LABEL_MANAGED_NODE_LABELS: &str = "com.docker.interlock.managed-node-labels";
/// On nodes: the hash of the labels interlock wrote, to tell a hand edit from a TOML edit.
pub const LABEL_NODE_LABELS_HASH: &str = "com.docker.interlock.node-labels-hash";

/// On interlock's ACME objects (secrets, and their sealed copies as configs): `account` or
/// `certificate` (`docs/design/acme.md`).
pub const LABEL_ACME: &str = "com.docker.interlock.acme";
pub const ACME_ACCOUNT: &str = "account";
pub const ACME_CERTIFICATE: &str = "certificate";
/// On an ACME certificate's objects: the host it was ordered for.
pub const LABEL_ACME_HOST: &str = "com.docker.interlock.acme.host";
/// On an ACME certificate's objects: its `notAfter`, RFC 3339.
pub const LABEL_ACME_NOT_AFTER: &str = "com.docker.interlock.acme.not-after";
/// On ACME objects: sha256 (hex) of the directory URL they belong to: another CA is another
/// account and other certificates.
pub const LABEL_ACME_DIRECTORY: &str = "com.docker.interlock.acme.directory";
/// What an ACME object's sealed copy (a config) is named: its secret's name and this.
pub const ACME_SEALED_SUFFIX: &str = "-sealed";

/// Swarm's limit on a config object's data (swarmkit's `MaxConfigSize`, 1000 KiB).
pub const MAX_CONFIG_SIZE: usize = 1000 * 1024;

/// Whether the operator created the object carrying these labels.
pub fn is_owned(labels: &BTreeMap<String, String>) -> bool {
    labels.get(LABEL_MANAGED_BY).is_some_and(|v| v == MANAGED_BY)
}

/// sha256 of `bytes`, as lowercase hex: every hash interlock records (specs, configs, tokens,
/// node labels).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
