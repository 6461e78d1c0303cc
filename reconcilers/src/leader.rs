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

/// The role of the replica on node `own` (its Swarm node ID). Without a node (a replica not
/// told where it runs: the commands a person runs, the unit tests) it is active.
pub fn role(own: Option<&str>, nodes: &[NodeFacts]) -> Role {
    let Some(own) = own else { return Role::Active };
    let leader = nodes.iter().find(|n| n.leader);
    match leader {
        Some(n) if n.id == own => Role::Active,
        // No leader in sight (a Raft election in progress): nobody writes until there is one.
        _ => Role::Standby { leader: leader.map(|n| n.hostname.clone()) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::manager;

    #[test]
    fn only_the_replica_on_the_raft_leader_writes() {
        let nodes = [manager("a", false), manager("b", true), manager("c", false)];
        assert_eq!(role(Some("b"), &nodes), Role::Active);
        assert_eq!(role(Some("a"), &nodes), Role::Standby { leader: Some("manager-b".into()) });
        assert_eq!(role(None, &nodes), Role::Active, "a replica not told its node: the single-core default");
        let electing = [manager("a", false), manager("c", false)];
        assert_eq!(role(Some("a"), &electing), Role::Standby { leader: None }, "no leader: nobody writes");
    }
}
