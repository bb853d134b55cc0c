//! The bridge from a workflow's `docker:` step (rendered) to the Docker
//! runner ([`crate::docker`], bollard). The daemon is connected on the
//! first docker step (and again after a failed connect), so an agent on a
//! machine without Docker starts and runs every other step; its docker
//! steps fail with `docker_unavailable`, saying so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::docker::{self, Docker, DockerError, DockerMount, DockerPolicy, DockerSpec};
use crate::model::DockerStep;
use crate::store::StepError;

/// How much longer than a docker step's own timeout the executor waits:
/// the runner kills and removes the container itself at the timeout.
pub const REMOVAL_GRACE: Duration = Duration::from_secs(15);

/// Runs docker steps through one daemon connection, made on first use.
#[derive(Debug)]
pub struct DockerRunner {
    policy: DockerPolicy,
    connected: tokio::sync::Mutex<Option<Arc<Docker>>>,
}

impl DockerRunner {
    pub fn new(policy: DockerPolicy) -> DockerRunner {
        DockerRunner {
            policy,
            connected: tokio::sync::Mutex::new(None),
        }
    }

    async fn docker(&self) -> Result<Arc<Docker>, DockerError> {
        let mut connected = self.connected.lock().await;
        if let Some(docker) = connected.as_ref() {
            return Ok(docker.clone());
        }
        let docker = Arc::new(Docker::connect(self.policy.clone()).await?);
        *connected = Some(docker.clone());
        Ok(docker)
    }

    /// Runs one container for a step (image, command and env rendered).
    pub async fn run(
        &self,
        step: &DockerStep,
        image: String,
        command: Vec<String>,
        env: BTreeMap<String, String>,
        timeout: Option<Duration>,
        cancel: CancellationToken,
    ) -> Result<Value, StepError> {
        let spec = DockerSpec {
            image,
            command,
            env,
            mounts: step
                .mounts
                .iter()
                .map(|mount| DockerMount {
                    source: PathBuf::from(&mount.source),
                    target: mount.target.clone(),
                    writable: mount.writable,
                })
                .collect(),
            network: step.network.clone(),
            memory_bytes: step.memory_bytes,
            cpus: step.cpus,
            pids: step.pids,
            timeout: timeout.unwrap_or(docker::DEFAULT_TIMEOUT),
            output_limit: step.output_limit.unwrap_or(docker::DEFAULT_OUTPUT_LIMIT),
            read_only_rootfs: step.read_only_rootfs,
        };
        let outcome = match self.docker().await {
            Ok(docker) => docker.run(&spec, cancel).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(output) => Ok(json!({
                "exit_code": output.exit_code,
                "stdout": output.stdout,
                "stderr": output.stderr,
                "truncated": output.truncated,
                "untrusted": true,
            })),
            Err(error) => {
                let mut step_error = StepError::new(error.kind(), error.to_string());
                if let DockerError::Exited { code, .. } = &error {
                    step_error.code = Some(*code);
                }
                if matches!(error, DockerError::Unavailable { .. }) {
                    // Connect again next time: the daemon may start later.
                    *self.connected.lock().await = None;
                }
                Err(step_error)
            }
        }
    }
}
