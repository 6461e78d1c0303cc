//! Which core replica writes. Several `interlock run` replicas may run on several managers (a
//! standby survives the loss of the active one's manager), and several on one manager (a
//! one-manager swarm scaled up, or a start-first update of the core); exactly one writes at a
//! time. Every replica decides from the same pass reads (the nodes' manager status and the
//! core service's tasks), so they agree without a request or a write of their own:
//!
//! 1. Only replicas whose tasks run are candidates; a replica knows itself by its own task ID
//!    (from its container), and its node from that task, not from the engine it talks to.
//! 2. Candidates on the Raft leader's node come first (Swarm's own election picks the node:
//!    when the leader's manager dies, Raft elects another within seconds), then the others by
//!    node ID.
//! 3. Among candidates on one node, the oldest task first (created time, then task ID): a new
//!    replica (a scale-up, a start-first update) never takes over from one that still runs.
//! 4. While no node is the leader (an election), nobody writes.
//!
//! A core run by hand (no task of its own) writes unless a core service runs: then it stands by
//! and says why (`run --writer` overrides). Writes stay safe even when two replicas briefly
//! disagree (their reads a moment apart): every update carries its version index and a
//! conflict makes the writer read again and plan afresh, and config and secret names are
//! content-derived.

use crate::observed::{NodeFacts, TaskFacts};

/// What this replica does in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It writes.
    Active,
    /// It plans, serves status, and writes nothing; `leader` is the node whose replica writes
    /// (its hostname), if known.
    Standby { leader: Option<String>, why: Standing },
}

/// Why a replica stands by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Another replica of the core service comes first (rules 2 and 3).
    Replica,
    /// No node is the Raft leader: an election is under way.
    Electing,
    /// Its own task is not listed as running yet.
    NotYetRunning,
    /// A core run by hand beside a running core service.
    BesideService,
}

/// Who this process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Not told (unit tests, `apply --writer`): it writes.
    Lone,
    /// A replica of the core service: its own task's ID.
    Task(String),
    /// Run by hand: it writes unless `core_running` (a core service has running tasks).
    ByHand { core_running: bool },
}

/// The role of this process given the nodes and the core service's tasks (`replicas`, running
/// or not; only running ones count).
pub fn role(identity: &Identity, nodes: &[NodeFacts], replicas: &[&TaskFacts]) -> Role {
    let own = match identity {
        Identity::Lone | Identity::ByHand { core_running: false } => return Role::Active,
        Identity::ByHand { core_running: true } => {
            let leader = nodes.iter().find(|n| n.leader).map(|n| n.hostname.clone());
            return Role::Standby { leader, why: Standing::BesideService };
        }
        Identity::Task(own) => own,
    };
    let Some(leader) = nodes.iter().find(|n| n.leader) else {
        return Role::Standby { leader: None, why: Standing::Electing };
    };
    let mut running: Vec<&&TaskFacts> = replicas.iter().filter(|t| t.running).collect();
    if !running.iter().any(|t| t.id == *own) {
        return Role::Standby { leader: Some(leader.hostname.clone()), why: Standing::NotYetRunning };
    }
    running.sort_by_key(|t| (t.node_id != leader.id, &t.node_id, &t.created, &t.id));
    let first = running.first().expect("own task listed");
    if first.id == *own {
        Role::Active
    } else {
        let hostname = nodes.iter().find(|n| n.id == first.node_id).map_or(&leader.hostname, |n| &n.hostname);
        Role::Standby { leader: Some(hostname.clone()), why: Standing::Replica }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manager;

    fn replica(id: &str, node: &str, created: &str) -> TaskFacts {
        TaskFacts {
            id: id.into(),
            service_id: "core".into(),
            node_id: node.into(),
            running: true,
            addresses: vec![],
            stuck_pending: false,
            failed: false,
            created: created.into(),
        }
    }

    fn standby(leader: &str, why: Standing) -> Role {
        Role::Standby { leader: Some(leader.into()), why }
    }

    #[test]
    fn only_the_replica_on_the_raft_leader_writes() {
        let nodes = [manager("a", false), manager("b", true), manager("c", false)];
        let tasks = [replica("ta", "a", "1"), replica("tb", "b", "2"), replica("tc", "c", "0")];
        let all: Vec<&TaskFacts> = tasks.iter().collect();
        let me = |id: &str| Identity::Task(id.into());
        assert_eq!(role(&me("tb"), &nodes, &all), Role::Active);
        assert_eq!(role(&me("ta"), &nodes, &all), standby("manager-b", Standing::Replica));
        assert_eq!(role(&me("tc"), &nodes, &all), standby("manager-b", Standing::Replica));
        assert_eq!(role(&Identity::Lone, &nodes, &all), Role::Active, "a process not told: the single-core default");
        let electing = [manager("a", false), manager("c", false)];
        assert_eq!(role(&me("ta"), &electing, &all), Role::Standby { leader: None, why: Standing::Electing });
    }

    #[test]
    fn of_two_replicas_on_the_leader_the_older_writes_and_a_newer_one_never_takes_over() {
        let nodes = [manager("a", true)];
        let old = replica("tz", "a", "2026-12-04T10:00:00.000000000Z");
        let new = replica("ta", "a", "2026-12-04T11:00:00.000000000Z");
        let both = [&old, &new];
        assert_eq!(role(&Identity::Task("tz".into()), &nodes, &both), Role::Active);
        assert_eq!(role(&Identity::Task("ta".into()), &nodes, &both), standby("manager-a", Standing::Replica));
        // Same time: the lower task ID, so exactly one writes whatever the clocks say.
        let twin = replica("ty", "a", "2026-12-04T10:00:00.000000000Z");
        let twins = [&old, &twin];
        assert_eq!(role(&Identity::Task("ty".into()), &nodes, &twins), Role::Active);
        assert_eq!(role(&Identity::Task("tz".into()), &nodes, &twins), standby("manager-a", Standing::Replica));
        // The old one stops: the new one writes.
        let stopped = TaskFacts { running: false, ..old.clone() };
        assert_eq!(role(&Identity::Task("ta".into()), &nodes, &[&stopped, &new]), Role::Active);
    }

    #[test]
    fn without_a_replica_on_the_leader_the_lowest_node_writes() {
        let nodes = [manager("a", false), manager("b", true), manager("c", false)];
        let (ta, tc) = (replica("ta", "a", "5"), replica("tc", "c", "1"));
        assert_eq!(role(&Identity::Task("tc".into()), &nodes, &[&tc]), Role::Active, "a lone core on a follower");
        assert_eq!(role(&Identity::Task("ta".into()), &nodes, &[&ta, &tc]), Role::Active);
        assert_eq!(role(&Identity::Task("tc".into()), &nodes, &[&ta, &tc]), standby("manager-a", Standing::Replica));
    }

    #[test]
    fn a_replica_whose_task_is_not_running_yet_and_a_core_by_hand_beside_a_service_stand_by() {
        let nodes = [manager("a", true)];
        let other = replica("tb", "a", "1");
        assert_eq!(
            role(&Identity::Task("ta".into()), &nodes, &[&other]),
            standby("manager-a", Standing::NotYetRunning)
        );
        assert_eq!(
            role(&Identity::ByHand { core_running: true }, &nodes, &[&other]),
            standby("manager-a", Standing::BesideService)
        );
        assert_eq!(role(&Identity::ByHand { core_running: false }, &nodes, &[]), Role::Active);
    }
}
