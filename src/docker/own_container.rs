//! Facts about interlock's own container, when it runs as a Swarm task: the image it runs from
//! (which the core gives the services it runs its own code in: the statistics agent) and the
//! Swarm service it belongs to (the name its extensions call it by), as the seam's
//! [`OwnContainer`].

use super::{DockerClient, DockerError};
use crate::swarm::OwnContainer;

impl DockerClient {
    /// The container `id` (interlock's own: the container ID is its hostname). `None` when no
    /// such container runs on this engine: interlock runs as a plain process.
    pub async fn own_container(&self, id: &str) -> Result<Option<OwnContainer>, DockerError> {
        let operation = format!("inspect container {id}");
        match self.call_read(&operation, self.docker.inspect_container(id, None)).await {
            Ok(container) => {
                let config = container.config.unwrap_or_default();
                let label = |key: &str| config.labels.as_ref().and_then(|l| l.get(key).cloned());
                let (service, task) = (label("com.docker.swarm.service.name"), label("com.docker.swarm.task.id"));
                Ok(Some(OwnContainer { image: config.image, service, task }))
            }
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image of the container `id`: [`own_container`](Self::own_container)'s.
    pub async fn container_image(&self, id: &str) -> Result<Option<String>, DockerError> {
        Ok(self.own_container(id).await?.and_then(|c| c.image))
    }
}
