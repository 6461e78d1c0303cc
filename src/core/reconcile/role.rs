//! Which of the cores that may run writes, as this process sees it from a pass's read
//! (`reconcilers::leader` decides): the core service's replicas, and the words a standby logs.

use reconcilers::leader;
use reconcilers::observed::Observed;
use reconcilers::observed::TaskFacts;

use crate::core::context::Replica;

/// This process's role in the pass that read `observed`: it is `identity`, a replica of the
/// core service `core_service` when it runs as one.
pub(super) fn role(identity: &Replica, core_service: Option<&str>, observed: &Observed) -> leader::Role {
    let identity = match identity {
        Replica::Lone => leader::Identity::Lone,
        Replica::Task(id) => leader::Identity::Task(id.clone()),
        Replica::ByHand => leader::Identity::ByHand { core_running: core_service_running(observed).is_some() },
    };
    let replicas = core_replicas(observed, core_service);
    leader::role(&identity, &observed.nodes, &replicas)
}

/// Why a replica stands by, for its log line.
pub(super) fn standing(why: leader::Standing) -> &'static str {
    match why {
        leader::Standing::Replica => {
            "another replica of the core writes (the one on the Raft leader, the oldest there)"
        }
        leader::Standing::Electing => "no manager is the Raft leader yet; nobody writes until one is",
        leader::Standing::NotYetRunning => "this replica's task is not listed as running yet",
        leader::Standing::BesideService => {
            "a core service runs and writes; this core, run by hand, writes nothing (`--writer` makes it write anyway)"
        }
    }
}

/// The tasks of the core's own service (`core_service`, by name).
fn core_replicas<'a>(observed: &'a Observed, core_service: Option<&str>) -> Vec<&'a TaskFacts> {
    let Some(name) = core_service else { return Vec::new() };
    let Some(service) = observed.services.iter().find(|s| s.def.name == name) else { return Vec::new() };
    observed.tasks.iter().filter(|t| t.service_id == service.id).collect()
}

/// The core service that wrote the owned extension services, if one has running tasks.
pub fn core_service_running(observed: &Observed) -> Option<&str> {
    observed
        .services
        .iter()
        .filter(|s| reconcilers::ownership::is_owned(&s.def.labels))
        .filter_map(|s| s.def.labels.get(reconcilers::ownership::LABEL_CORE_SERVICE))
        .find(|name| {
            observed
                .services
                .iter()
                .find(|s| s.def.name == **name)
                .is_some_and(|core| observed.tasks.iter().any(|t| t.service_id == core.id && t.running))
        })
        .map(String::as_str)
}
