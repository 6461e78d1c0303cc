//! Facts about interlock's own container, when it runs as a Swarm task: the image it runs from,
//! which the core gives the services it runs its own code in (the statistics agent).

use super::{DockerClient, DockerError};

impl DockerClient {
    /// The image of the container `id` (interlock's own: the container ID is its hostname), as
    /// its spec names it (`local/interlock:lab`, not a digest). `None` when no such container
    /// runs on this engine: interlock runs as a plain process.
    pub async fn container_image(&self, id: &str) -> Result<Option<String>, DockerError> {
        let operation = format!("inspect container {id}");
        match self.call_read(&operation, self.docker.inspect_container(id, None)).await {
            Ok(container) => Ok(container.config.and_then(|c| c.image)),
            Err(DockerError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
