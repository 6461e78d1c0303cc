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

#[cfg(test)]
mod tests {
    use reconcilers::fixtures::seed_swarm;
    use reconcilers::observed::{ConfigFacts, SecretMount};

    use super::*;
    use crate::swarm::memory::MemorySwarm;

    #[tokio::test]
    async fn a_retired_certificate_goes_once_no_service_mounts_it() {
        let mut observed = seed_swarm();
        for name in ["interlock-acme-a.test-old", "interlock-acme-a.test-mounted"] {
            observed.secrets.push(name.to_owned());
            observed.configs.push(ConfigFacts {
                id: format!("id-{name}"),
                name: format!("{name}-sealed"),
                labels: Default::default(),
                version: 1,
                data: Vec::new(),
            });
        }
        observed.services[0]
            .def
            .secrets
            .push(SecretMount { secret_name: "interlock-acme-a.test-mounted".into(), target: "x".into() });
        let swarm = MemorySwarm::new(observed);
        let retire: Vec<Retire> = ["old", "mounted"]
            .iter()
            .map(|n| Retire {
                name: format!("interlock-acme-a.test-{n}"),
                sealed: Some(format!("interlock-acme-a.test-{n}-sealed")),
                host: "a.test".into(),
                reason: "a newer certificate is in use".into(),
            })
            .collect();
        assert_eq!(retire_unused(&swarm, &swarm.observed(), &retire).await, 2);
        let after = swarm.observed();
        assert_eq!(after.secrets, ["interlock-acme-a.test-mounted"]);
        assert_eq!(
            after.configs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["interlock-acme-a.test-mounted-sealed"]
        );
    }
}
