//! The Docker adapter as the [`Swarm`] (the loop's seam, and the manager-side facts the commands
//! set up with): each call of the seam is one of [`DockerClient`]'s, and each [`DockerError`] is
//! told to the loop as the [`SwarmError`] its error policy acts on (with the same words).

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use reconcilers::observed::{
    ConfigDef, NetworkDef, NodeFacts, ObjectKind, SecretDef, ServiceDef, ServiceFacts, SwarmEvent,
};
use reconcilers::observed::{EngineFacts, Observed};

use super::{DockerClient, DockerError};
use crate::swarm::{EngineEvent, OwnContainer, Swarm, SwarmError};

/// The list filter for the objects the operator owns (`com.docker.interlock.managed-by`...).
pub fn managed_label() -> String {
    format!("{}={}", reconcilers::ownership::LABEL_MANAGED_BY, reconcilers::ownership::MANAGED_BY)
}

impl Swarm for DockerClient {
    async fn observe(&self) -> Result<Observed, SwarmError> {
        DockerClient::observe(self, &managed_label()).await.map_err(SwarmError::from)
    }

    async fn inspect_service(&self, id: &str) -> Result<Option<ServiceFacts>, SwarmError> {
        DockerClient::inspect_service(self, id).await.map_err(SwarmError::from)
    }

    async fn task_logs(&self, task_id: &str) -> Result<String, SwarmError> {
        DockerClient::task_logs(self, task_id).await.map_err(SwarmError::from)
    }

    async fn create_network(&self, def: &NetworkDef) -> Result<(), SwarmError> {
        DockerClient::create_network(self, def).await.map(drop).map_err(SwarmError::from)
    }

    async fn create_config(&self, def: &ConfigDef) -> Result<(), SwarmError> {
        DockerClient::create_config(self, def).await.map(drop).map_err(SwarmError::from)
    }

    async fn create_service(&self, def: &ServiceDef) -> Result<(), SwarmError> {
        DockerClient::create_service(self, def).await.map(drop).map_err(SwarmError::from)
    }

    async fn update_service(&self, id: &str, version: u64, def: &ServiceDef) -> Result<(), SwarmError> {
        DockerClient::update_service(self, id, version, def).await.map_err(SwarmError::from)
    }

    async fn delete_service(&self, id: &str) -> Result<(), SwarmError> {
        DockerClient::delete_service(self, id).await.map_err(SwarmError::from)
    }

    async fn reschedule(&self, id: &str) -> Result<(), SwarmError> {
        DockerClient::force_update(self, id).await.map_err(SwarmError::from)
    }

    async fn delete_config(&self, id: &str) -> Result<(), SwarmError> {
        DockerClient::delete_config(self, id).await.map_err(SwarmError::from)
    }

    async fn create_secret(&self, def: &SecretDef) -> Result<(), SwarmError> {
        DockerClient::create_secret(self, def).await.map(drop).map_err(SwarmError::from)
    }

    async fn delete_secret(&self, name: &str) -> Result<(), SwarmError> {
        DockerClient::delete_secret(self, name).await.map_err(SwarmError::from)
    }

    async fn inspect_node(&self, id: &str) -> Result<Option<NodeFacts>, SwarmError> {
        DockerClient::inspect_node(self, id).await.map_err(SwarmError::from)
    }

    async fn update_node(&self, id: &str, version: u64, labels: &BTreeMap<String, String>) -> Result<(), SwarmError> {
        DockerClient::update_node(self, id, version, labels).await.map_err(SwarmError::from)
    }

    fn events(&self, kinds: &[ObjectKind]) -> impl Stream<Item = Result<SwarmEvent, SwarmError>> + Send + 'static {
        DockerClient::events(self, kinds).map(|event| event.map_err(SwarmError::from))
    }

    fn requests(&self) -> (u64, u64) {
        (self.counters().reads(), self.counters().writes())
    }

    fn endpoint(&self) -> &str {
        DockerClient::endpoint(self)
    }

    async fn engine(&self) -> Result<EngineFacts, SwarmError> {
        DockerClient::engine(self).await.map_err(SwarmError::from)
    }

    async fn require_manager(&self) -> Result<EngineFacts, SwarmError> {
        DockerClient::require_manager(self).await.map_err(SwarmError::from)
    }

    async fn manager_join_token(&self) -> Result<String, SwarmError> {
        DockerClient::manager_join_token(self).await.map_err(SwarmError::from)
    }

    async fn own_container(&self, id: &str) -> Result<Option<OwnContainer>, SwarmError> {
        DockerClient::own_container(self, id).await.map_err(SwarmError::from)
    }

    fn all_events(&self) -> impl Stream<Item = Result<EngineEvent, SwarmError>> + Send + 'static {
        DockerClient::all_events(self).map(|event| event.map_err(SwarmError::from))
    }
}

impl From<DockerError> for SwarmError {
    fn from(error: DockerError) -> Self {
        let transient = error.is_transient();
        match error {
            DockerError::NotFound { operation } => SwarmError::NotFound { operation },
            DockerError::Conflict { operation } => SwarmError::Conflict { operation },
            DockerError::OutOfSequence { operation } => SwarmError::OutOfSequence { operation },
            // The same words, and the same cause behind them.
            DockerError::Transport { operation, source } => SwarmError::Failed {
                message: format!("{operation}: {source}"),
                transient,
                source: Some(Box::new(source)),
            },
            other @ (DockerError::Unreachable { .. }
            | DockerError::Tls { .. }
            | DockerError::NotManager { .. }
            | DockerError::NotRunning { .. }
            | DockerError::Rejected { .. }
            | DockerError::VersionOverflow { .. }
            | DockerError::Undecodable { .. }
            | DockerError::InvalidRequest { .. }
            | DockerError::Timeout { .. }) => SwarmError::failed(other.to_string(), transient),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_reads_dockers_errors_as_they_were_classified_and_worded() {
        let operation = || "update service web".to_owned();
        let cases = [
            DockerError::NotFound { operation: operation() },
            DockerError::Conflict { operation: operation() },
            DockerError::OutOfSequence { operation: operation() },
            DockerError::Rejected { operation: operation(), status: 500, message: "oops".into() },
            DockerError::Rejected { operation: operation(), status: 400, message: "port in use".into() },
            DockerError::Timeout { operation: operation(), seconds: 60 },
        ];
        for docker in cases {
            let (words, transient) = (docker.to_string(), docker.is_transient());
            let swarm = SwarmError::from(docker);
            assert_eq!((swarm.to_string(), swarm.is_transient()), (words, transient));
        }
        let gone = SwarmError::from(DockerError::NotFound { operation: operation() });
        assert!(matches!(gone, SwarmError::NotFound { .. }), "{gone:?}");
    }
}
