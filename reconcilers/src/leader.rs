//! Which core replica writes. Several `interlock run` replicas may run on several managers (a
//! standby survives the loss of the active one's manager); exactly one writes at a time: the one
//! on the Swarm's current Raft leader, read from the nodes' manager status that every pass reads
//! anyway. So electing costs no request and no write, and it follows Swarm's own election: when
//! the leader's manager dies, Raft elects another within seconds and the replica there takes
//! over on its next pass. Writes stay safe whatever happens (two replicas briefly both believing
//! they lead): every service and node update carries its version index (compare-and-swap), and
//! config and secret names are content-derived.

use crate::swarm::NodeFacts;

/// What this replica does in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It writes.
    Active,
    /// It plans, serves status and hitless configs, and writes nothing; `leader` is the node
    /// whose replica writes (if the nodes say).
    Standby { leader: Option<String> },
}

/// The role of the replica on node `own` (its Swarm node ID), given the nodes and the nodes on
/// which the core's service has running tasks (`replicas`; this replica's own node counts
/// whether or not it is listed). Without a node (a replica not told where it runs: the
/// commands a person runs) it is active.
///
/// The replica on the Raft leader writes. When no replica runs there (a lone core on a
/// follower manager, as the walk-through's `docker service create` may place it, or the
/// leader's replica restarting), the one on the lowest node ID writes: every replica reads the
/// same tasks, so they agree, and a lone core always writes.
pub fn role(own: Option<&str>, nodes: &[NodeFacts], replicas: &[&str]) -> Role {
    let Some(own) = own else { return Role::Active };
    let leader = nodes.iter().find(|n| n.leader);
    let standby = |leader: Option<&NodeFacts>| Role::Standby { leader: leader.map(|n| n.hostname.clone()) };
    match leader {
        Some(n) if n.id == own => Role::Active,
        // No leader in sight (a Raft election in progress): nobody writes until there is one.
        None => standby(None),
        Some(n) if replicas.contains(&n.id.as_str()) => standby(Some(n)),
        Some(n) => {
            let first = replicas.iter().copied().chain(std::iter::once(own)).min().unwrap_or(own);
            if first == own { Role::Active } else { standby(Some(n)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manager;

    #[test]
    fn only_the_replica_on_the_raft_leader_writes() {
        let nodes = [manager("a", false), manager("b", true), manager("c", false)];
        let replicas = ["a", "b", "c"];
        assert_eq!(role(Some("b"), &nodes, &replicas), Role::Active);
        assert_eq!(role(Some("a"), &nodes, &replicas), Role::Standby { leader: Some("manager-b".into()) });
        assert_eq!(role(None, &nodes, &replicas), Role::Active, "a replica not told its node: the single-core default");
        let electing = [manager("a", false), manager("c", false)];
        assert_eq!(role(Some("a"), &electing, &["a", "c"]), Role::Standby { leader: None }, "no leader: nobody writes");
    }

    #[test]
    fn without_a_replica_on_the_leader_the_lowest_node_writes() {
        let nodes = [manager("a", false), manager("b", true), manager("c", false)];
        assert_eq!(role(Some("c"), &nodes, &["c"]), Role::Active, "a lone core on a follower writes");
        assert_eq!(role(Some("c"), &nodes, &[]), Role::Active, "its own task not yet listed");
        assert_eq!(role(Some("a"), &nodes, &["a", "c"]), Role::Active);
        assert_eq!(role(Some("c"), &nodes, &["a", "c"]), Role::Standby { leader: Some("manager-b".into()) });
    }
}
