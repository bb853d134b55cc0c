//! The bridge from a workflow's `docker:` step to the Docker runner
//! (`docker.rs`, bollard, written beside this engine). Until that module
//! is merged, [`DockerRunner`] is never constructed and docker steps fail
//! with the typed error `docker_unavailable`; every other step runs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::model::DockerStep;
use crate::store::StepError;

/// Runs docker steps through the engine's Docker connection.
#[derive(Debug)]
pub struct DockerRunner {
    _private: (),
}

impl DockerRunner {
    /// Runs one container for a step (rendered image, command and env).
    pub async fn run(
        &self,
        _step: &DockerStep,
        _image: String,
        _command: Vec<String>,
        _env: BTreeMap<String, String>,
        _timeout: Option<Duration>,
        _cancel: CancellationToken,
    ) -> Result<Value, StepError> {
        Err(StepError::new(
            "docker_unavailable",
            "the Docker runner is not present in this build of llmbasedos-agent",
        ))
    }
}
