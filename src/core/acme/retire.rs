//! Removing retired certificates (`Plan::acme_retire`): a certificate's secret and its sealed
//! config go once no service names them (a hitless proxy names its mounted ones until its next
//! roll). Done by the writer's pass.

use reconcilers::acme::Retire;
use reconcilers::observed::Observed;
use tracing::{info, warn};

use crate::swarm::Swarm;

/// Removes what `retire` lists and no observed service mounts; returns the writes done.
pub async fn retire_unused<S: Swarm>(swarm: &S, observed: &Observed, retire: &[Retire]) -> usize {
    let mut writes = 0;
    for old in retire {
        let named = observed.services.iter().any(|s| {
            s.def.secrets.iter().any(|m| m.secret_name == old.name)
                || s.def.configs.iter().any(|m| Some(&m.config_name) == old.sealed.as_ref())
        });
        if named {
            continue;
        }
        info!(certificate = %old.name, host = %old.host, "retiring the ACME certificate: {}", old.reason);
        if let Some(sealed) = &old.sealed
            && let Some(config) = observed.configs.iter().find(|c| c.name == *sealed)
        {
            match swarm.delete_config(&config.id).await {
                Ok(()) => writes += 1,
                Err(e) => warn!(config = %sealed, "retiring: {e}"),
            }
        }
        match swarm.delete_secret(&old.name).await {
            Ok(()) => writes += 1,
            Err(e) => warn!(secret = %old.name, "retiring: {e}"),
        }
    }
    writes
}
