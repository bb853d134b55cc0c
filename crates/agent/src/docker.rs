//! The `docker` step runner: one container per step, confined by a policy
//! the workflow cannot widen, and always removed afterwards.
//!
//! What a step may ask for is checked here, before Docker is touched: bind
//! mounts only beneath an allowed root (the path canonicalised, so symlinks
//! are resolved before the check, and `..` refused outright), read-only
//! unless the step asks for writing *and* the policy allows writable mounts
//! at all; no network unless the step names one and the policy allows it;
//! never the host's namespaces. What Docker is told is fixed here too: not
//! privileged, every capability dropped, `no-new-privileges`, private IPC,
//! the memory/CPU/pids limits the step gives, no log driver (the output is
//! read from the attach stream, so a chatty step cannot fill the daemon's
//! disk), and no implicit pull (a missing image is an error unless the
//! policy allows pulls).
//!
//! A limit of the mount check: the daemon resolves the (already resolved)
//! source again when it mounts it, so a path component swapped for a
//! symlink in between by someone who can write beneath an allowed root (a
//! concurrent step with a writable mount there) is followed. Keep writable
//! mounts off, or give writable steps a root of their own.
//!
//! Removal: every container gets a name chosen *before* it is created, held
//! by a guard. The normal path removes it explicitly (forced, so a running
//! one is killed first) after the outcome is known: exit, timeout, cancel or
//! an engine error alike. If the run's future is dropped instead (the
//! engine aborted the task), the guard's `Drop` spawns the same removal on
//! the runtime. A process killed outright leaves its containers behind:
//! they carry [`LABEL`], and [`Docker::remove_leftovers`] removes them at
//! the next start.
//!
//! The daemon on Debian 12 (docker.io 20.10) speaks API 1.41 at most, and
//! bollard 0.21 defaults to 1.53: the version is negotiated at connect.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, ListContainersOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use futures::{Stream, StreamExt};
use proto::text::echo;
use serde::{Deserialize, Deserializer};
use tokio_util::sync::CancellationToken;

/// The label every container this runner creates carries (value: the
/// creating process's pid), so leftovers of a killed agent can be found.
/// (A pid, not a random run id: whether its process still lives is what
/// tells a leftover from another agent's step.)
pub const LABEL: &str = "org.llmbasedos.agent";

/// Where Docker listens when neither the policy nor `DOCKER_HOST` says.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A step's timeout when its YAML gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How much of each of stdout and stderr a step keeps when its YAML gives no
/// `output_limit`.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

/// How much of the end of stderr an [`DockerError::Exited`] carries.
pub const STDERR_TAIL: usize = 2048;

/// Per-request timeout for the Docker API (bollard applies it to the wait for
/// the response head, so long waits and streams are not cut by it).
const REQUEST_TIMEOUT_SECS: u64 = 60;

const UNAVAILABLE_HINT: &str = "install Docker (Arch: pacman -S docker; Debian: apt-get install docker.io), \
start it (systemctl start docker.socket), and make sure the agent's user is in the docker group \
(usermod -aG docker <user>, then restart the agent)";

/// What the machine's owner allows Docker steps to do. Configuration, not
/// workflow: a workflow cannot widen it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerPolicy {
    /// The daemon's UNIX socket; `None`: `$DOCKER_HOST` when it is a
    /// `unix://` address, else [`DEFAULT_SOCKET`].
    pub socket: Option<PathBuf>,
    /// Roots beneath which host paths may be bind-mounted. Empty: no mounts.
    pub allowed_mounts: Vec<PathBuf>,
    /// Whether a step may join a network at all (its default is `none`).
    pub allow_network: bool,
    /// Whether a mount may be writable at all (a step still has to ask).
    pub allow_writable_mounts: bool,
    /// Whether a missing image may be pulled from the daemon's registry.
    /// Off by default: nothing is fetched from the network implicitly.
    pub allow_pull: bool,
    /// `uid[:gid]` every container runs as (e.g. `"65534:65534"`); `None`:
    /// the image's own user. Files a writable mount receives belong to it.
    pub user: Option<String>,
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerMount {
    pub source: PathBuf,
    pub target: String,
    #[serde(default)]
    pub writable: bool,
}

/// One `docker` step, as the workflow gives it (after templating).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    pub image: String,
    /// Empty: the image's own command.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<DockerMount>,
    /// `None` or `"none"`: no network. Anything else needs the policy's
    /// `allow_network`; `host` and `container:…` are always refused.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub pids: Option<i64>,
    /// Seconds as a number, or a string such as `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped.
    #[serde(default = "default_output_limit")]
    pub output_limit: usize,
    /// Mount the image's root file system read-only (with a fresh tmpfs on
    /// `/tmp`, so programs still have somewhere to write scratch files).
    #[serde(default)]
    pub read_only_rootfs: bool,
}

impl DockerSpec {
    /// A step running `image`'s own command with the defaults the YAML
    /// would get: no env, mounts or network, no limits,
    /// [`DEFAULT_TIMEOUT`], [`DEFAULT_OUTPUT_LIMIT`], a writable root.
    pub fn new(image: impl Into<String>) -> DockerSpec {
        DockerSpec {
            image: image.into(),
            command: Vec::new(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            network: None,
            memory_bytes: None,
            cpus: None,
            pids: None,
            timeout: DEFAULT_TIMEOUT,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            read_only_rootfs: false,
        }
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_output_limit() -> usize {
    DEFAULT_OUTPUT_LIMIT
}

/// What a step that exited with status 0 printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout or stderr was longer than the step's `output_limit`.
    pub truncated: bool,
}

/// Why a mount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountRefusal {
    /// The policy allows no mounts at all.
    NoRootsConfigured,
    NotAbsolute,
    /// The path (source or target) contains `..`.
    ParentComponent,
    /// The source does not exist (or cannot be resolved).
    Unresolvable,
    /// The resolved source is not beneath any allowed root.
    OutsideAllowedRoots,
    /// The step asked for a writable mount and the policy allows none.
    WritableNotAllowed,
    /// The target is `/` or under `/proc`, `/sys` or `/dev`.
    ForbiddenTarget,
}

impl MountRefusal {
    fn describe(self) -> &'static str {
        match self {
            Self::NoRootsConfigured => {
                "the Docker policy allows no mounts (allowed_mounts is empty)"
            }
            Self::NotAbsolute => "the path must be absolute",
            Self::ParentComponent => "the path must not contain '..'",
            Self::Unresolvable => "the source does not exist",
            Self::OutsideAllowedRoots => {
                "the source is not beneath any of the policy's allowed_mounts"
            }
            Self::WritableNotAllowed => {
                "the Docker policy allows no writable mounts (allow_writable_mounts is off)"
            }
            Self::ForbiddenTarget => "the target must not be '/' nor under /proc, /sys or /dev",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No daemon to talk to: no socket, nobody listening, or no permission.
    #[error("Docker is not available at {}: {reason}; {hint}", socket.display())]
    Unavailable {
        socket: PathBuf,
        reason: String,
        hint: &'static str,
    },
    #[error("mount of {} refused: {}", echo(&path.to_string_lossy()), reason.describe())]
    MountRefused { path: PathBuf, reason: MountRefusal },
    #[error("network {} refused: {reason}", echo(network))]
    NetworkRefused {
        network: String,
        reason: &'static str,
    },
    #[error("image {} is not present in Docker: {hint}", echo(image))]
    ImageMissing { image: String, hint: &'static str },
    /// A field of the step that no container can be made from.
    #[error("docker step field {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the container was killed after its timeout of {after:?}")]
    Timeout { after: Duration },
    #[error("the container exited with status {code}{}", if *oom_killed { " (killed: out of memory)" } else { "" })]
    Exited {
        code: i64,
        /// The last [`STDERR_TAIL`] bytes of its stderr (lossy UTF-8).
        stderr_tail: String,
        /// The kernel's OOM killer ended it (the memory limit was reached).
        oom_killed: bool,
    },
    #[error("the container was killed: the run was stopped")]
    Cancelled,
    /// Docker refused or failed an operation (the message is Docker's, bounded).
    #[error("Docker failed to {operation}: {message}")]
    Engine {
        operation: &'static str,
        message: String,
    },
}

impl DockerError {
    /// The error's kind as a stable snake_case name (what a step's error
    /// records; the text is for people).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "docker_unavailable",
            Self::MountRefused { .. } => "docker_mount_refused",
            Self::NetworkRefused { .. } => "docker_network_refused",
            Self::ImageMissing { .. } => "docker_image_missing",
            Self::Invalid { .. } => "docker_invalid_step",
            Self::Timeout { .. } => "timeout",
            Self::Exited { .. } => "docker_exited",
            Self::Cancelled => "cancelled",
            Self::Engine { .. } => "docker_engine",
        }
    }
}

/// A connection to the Docker daemon, with the policy its steps run under.
/// Cheap to share (`&self` everywhere); runs may go on concurrently.
#[derive(Debug)]
pub struct Docker {
    client: bollard::Docker,
    policy: DockerPolicy,
    socket: PathBuf,
}

impl Docker {
    /// Connects to the policy's socket and negotiates the API version.
    pub async fn connect(policy: DockerPolicy) -> Result<Docker, DockerError> {
        let socket = policy.socket.clone().unwrap_or_else(default_socket);
        let unavailable = |reason: String| DockerError::Unavailable {
            socket: socket.clone(),
            reason,
            hint: UNAVAILABLE_HINT,
        };
        match tokio::fs::metadata(&socket).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(unavailable(
                    "no socket there (is the daemon installed and started?)".into(),
                ));
            }
            Err(error) => return Err(unavailable(io_reason(&error))),
        }
        let address = format!("unix://{}", socket.display());
        let client = bollard::Docker::connect_with_unix(
            &address,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|error| unavailable(bollard_reason(&error)))?
        .negotiate_version()
        .await
        .map_err(|error| unavailable(bollard_reason(&error)))?;
        Ok(Docker {
            client,
            policy,
            socket,
        })
    }

    pub fn policy(&self) -> &DockerPolicy {
        &self.policy
    }

    /// Runs one step to its end: validated against the policy first, then
    /// created, started, its output read, and removed whatever happened.
    pub async fn run(
        &self,
        spec: &DockerSpec,
        cancel: CancellationToken,
    ) -> Result<DockerOutput, DockerError> {
        let body = self.container_body(spec).await?;
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let mut guard = ContainerGuard::new(self.client.clone());
        let outcome = self
            .guarded_run(&guard.name, body, spec, deadline, &cancel)
            .await;
        // Forced: a container still running (timeout, cancel) is killed first.
        guard.remove().await;
        outcome
    }

    /// The timeout and the cancel cover the pull (when allowed) and the run;
    /// the create is never cut off mid-request, because a create the daemon
    /// finishes after the removal was asked for would leave the container
    /// behind (it is bounded by the API request timeout instead).
    async fn guarded_run(
        &self,
        name: &str,
        body: ContainerCreateBody,
        spec: &DockerSpec,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<DockerOutput, DockerError> {
        let stopped = stop_signal(cancel, deadline, spec.timeout);
        tokio::select! {
            biased;
            error = stopped => return Err(error),
            found = self.ensure_image(&spec.image) => found?,
        }
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.client
            .create_container(Some(options), body)
            .await
            .map_err(|error| self.engine_error("create the container", error))?;
        let stopped = stop_signal(cancel, deadline, spec.timeout);
        tokio::select! {
            biased;
            error = stopped => Err(error),
            outcome = self.supervise(name, spec) => outcome,
        }
    }

    /// Removes the containers this runner's label marks whose creating
    /// process is gone (leftovers of an agent killed mid-step; another
    /// agent's running steps are left alone); returns how many it removed.
    pub async fn remove_leftovers(&self) -> Result<usize, DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![LABEL.to_string()])]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|error| self.engine_error("list containers", error))?;
        let mut removed = 0;
        let leftovers = containers.into_iter().filter(|container| {
            let creator = container
                .labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL));
            let alive = creator
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid != 0 && Path::new(&format!("/proc/{pid}")).exists());
            !alive
        });
        for id in leftovers.filter_map(|container| container.id) {
            match self
                .client
                .remove_container(&id, Some(force_remove()))
                .await
            {
                Ok(()) => removed += 1,
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(self.engine_error("remove a leftover container", error)),
            }
        }
        Ok(removed)
    }

    /// Attaches, starts, reads the output and waits for the exit.
    async fn supervise(&self, name: &str, spec: &DockerSpec) -> Result<DockerOutput, DockerError> {
        // Attached before the start, so not a byte of output is missed (there
        // is no log driver to replay it from).
        let attach = AttachContainerOptions {
            stdout: true,
            stderr: true,
            stream: true,
            logs: false,
            ..Default::default()
        };
        let attached = self
            .client
            .attach_container(name, Some(attach))
            .await
            .map_err(|error| self.engine_error("attach to the container", error))?;
        self.client
            .start_container(name, None)
            .await
            .map_err(|error| self.engine_error("start the container", error))?;
        // "not-running" after the start: a container that already exited
        // answers at once with its status (it is not auto-removed).
        let wait = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut waiter = self.client.wait_container(name, Some(wait));
        let (captured, status) =
            tokio::join!(capture(attached.output, spec.output_limit), waiter.next());
        let code = match status {
            Some(Ok(response)) => response.status_code,
            // bollard turns a non-zero status into an error.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(error)) => return Err(self.engine_error("wait for the container", error)),
            None => {
                return Err(DockerError::Engine {
                    operation: "wait for the container",
                    message: "the wait ended without a status".into(),
                });
            }
        };
        let captured =
            captured.map_err(|error| self.engine_error("read the container's output", error))?;
        if code != 0 {
            let oom_killed = self.oom_killed(name, code, spec).await;
            return Err(DockerError::Exited {
                code,
                stderr_tail: String::from_utf8_lossy(&captured.stderr.tail).into_owned(),
                oom_killed,
            });
        }
        let truncated = captured.stdout.total > captured.stdout.head.len() as u64
            || captured.stderr.total > captured.stderr.head.len() as u64;
        Ok(DockerOutput {
            exit_code: code,
            stdout: String::from_utf8_lossy(&captured.stdout.head).into_owned(),
            stderr: String::from_utf8_lossy(&captured.stderr.head).into_owned(),
            truncated,
        })
    }

    /// Whether the kernel's OOM killer ended the container. Docker records
    /// it from containerd's OOM event, which may come after the exit (seen
    /// on cgroup v1, and over a second late on a loaded machine with cgroup
    /// v2), so a SIGKILL under a memory limit is looked at for up to
    /// `OOM_EVENT_WAIT`; any other exit once.
    async fn oom_killed(&self, name: &str, code: i64, spec: &DockerSpec) -> bool {
        const SIGKILLED: i64 = 128 + 9;
        const OOM_EVENT_WAIT: Duration = Duration::from_secs(5);
        let deadline = if code == SIGKILLED && spec.memory_bytes.is_some() {
            Instant::now() + OOM_EVENT_WAIT
        } else {
            Instant::now()
        };
        for attempt in 0.. {
            if attempt > 0 {
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let state = match self.client.inspect_container(name, None).await {
                Ok(inspect) => inspect.state,
                Err(_) => return false,
            };
            if state.and_then(|state| state.oom_killed).unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// The container Docker is asked for: the policy applied to the spec.
    async fn container_body(&self, spec: &DockerSpec) -> Result<ContainerCreateBody, DockerError> {
        if spec.image.is_empty() {
            return Err(DockerError::Invalid {
                field: "image",
                reason: "must not be empty",
            });
        }
        let network = self.network_mode(spec.network.as_deref())?;
        let mut mounts = Vec::with_capacity(spec.mounts.len());
        for mount in &spec.mounts {
            mounts.push(self.checked_mount(mount).await?);
        }
        let mut env = Vec::with_capacity(spec.env.len());
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(DockerError::Invalid {
                    field: "env",
                    reason: "names must be non-empty without '=' and no NUL anywhere",
                });
            }
            env.push(format!("{key}={value}"));
        }
        let memory = match spec.memory_bytes {
            None => None,
            // Docker's own floor is 6 MiB; below it the daemon refuses anyway.
            Some(bytes) if bytes < 6 << 20 => {
                return Err(DockerError::Invalid {
                    field: "memory_bytes",
                    reason: "must be at least 6 MiB",
                });
            }
            Some(bytes) => Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
        };
        let nano_cpus = match spec.cpus {
            None => None,
            Some(cpus) if cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0 => {
                Some((cpus * 1e9) as i64)
            }
            Some(_) => {
                return Err(DockerError::Invalid {
                    field: "cpus",
                    reason: "must be a number above 0 (at most 1024)",
                });
            }
        };
        if spec.pids.is_some_and(|pids| pids < 1) {
            return Err(DockerError::Invalid {
                field: "pids",
                reason: "must be at least 1",
            });
        }
        if spec.timeout.is_zero() {
            return Err(DockerError::Invalid {
                field: "timeout",
                reason: "must be above zero",
            });
        }
        let host_config = HostConfig {
            network_mode: Some(network),
            mounts: Some(mounts),
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            nano_cpus,
            pids_limit: spec.pids,
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(Vec::new()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ipc_mode: Some("private".into()),
            readonly_rootfs: Some(spec.read_only_rootfs),
            tmpfs: spec.read_only_rootfs.then(|| {
                HashMap::from([(
                    "/tmp".to_string(),
                    "rw,nosuid,nodev,noexec,size=64m".to_string(),
                )])
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            auto_remove: Some(false),
            publish_all_ports: Some(false),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(env),
            user: self.policy.user.clone(),
            labels: Some(HashMap::from([(
                LABEL.to_string(),
                std::process::id().to_string(),
            )])),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(false),
            open_stdin: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    fn network_mode(&self, asked: Option<&str>) -> Result<String, DockerError> {
        let refused = |reason| DockerError::NetworkRefused {
            network: asked.unwrap_or_default().to_string(),
            reason,
        };
        match asked {
            None | Some("none") => Ok("none".into()),
            Some("") => Err(refused(
                "the network name is empty (leave it out for no network)",
            )),
            Some("host") => Err(refused("the host's network namespace is never shared")),
            Some(name) if name.starts_with("container:") => Err(refused(
                "another container's network namespace is never shared",
            )),
            Some(_) if !self.policy.allow_network => Err(refused(
                "the Docker policy allows no network (allow_network is off)",
            )),
            Some(name) => Ok(name.to_string()),
        }
    }

    async fn checked_mount(&self, mount: &DockerMount) -> Result<Mount, DockerError> {
        let refuse = |path: &Path, reason| DockerError::MountRefused {
            path: path.to_path_buf(),
            reason,
        };
        let target = Path::new(&mount.target);
        if !target.is_absolute() {
            return Err(refuse(target, MountRefusal::NotAbsolute));
        }
        if has_parent_component(target) {
            return Err(refuse(target, MountRefusal::ParentComponent));
        }
        if target == Path::new("/")
            || ["/proc", "/sys", "/dev"]
                .iter()
                .any(|dir| target.starts_with(dir))
        {
            return Err(refuse(target, MountRefusal::ForbiddenTarget));
        }
        let source = &mount.source;
        if self.policy.allowed_mounts.is_empty() {
            return Err(refuse(source, MountRefusal::NoRootsConfigured));
        }
        if !source.is_absolute() {
            return Err(refuse(source, MountRefusal::NotAbsolute));
        }
        if has_parent_component(source) {
            return Err(refuse(source, MountRefusal::ParentComponent));
        }
        if mount.writable && !self.policy.allow_writable_mounts {
            return Err(refuse(source, MountRefusal::WritableNotAllowed));
        }
        let resolved = tokio::fs::canonicalize(source)
            .await
            .map_err(|_| refuse(source, MountRefusal::Unresolvable))?;
        let mut beneath = false;
        for root in &self.policy.allowed_mounts {
            // Roots are resolved at each check: one created after the start
            // counts, one replaced by a symlink is followed like the source.
            if let Ok(root) = tokio::fs::canonicalize(root).await
                && resolved.starts_with(&root)
            {
                beneath = true;
                break;
            }
        }
        if !beneath {
            return Err(refuse(source, MountRefusal::OutsideAllowedRoots));
        }
        Ok(Mount {
            // The resolved path: what was checked is what is mounted.
            source: Some(resolved.to_string_lossy().into_owned()),
            target: Some(mount.target.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(!mount.writable),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        match self.client.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(self.engine_error("inspect the image", error)),
        }
        if !self.policy.allow_pull {
            return Err(DockerError::ImageMissing {
                image: image.to_string(),
                hint: "load or build it first (docker load / docker import / docker pull); \
                       the Docker policy does not allow pulls (allow_pull is off)",
            });
        }
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut progress = self.client.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            if let Err(error) = step {
                return Err(match error {
                    BollardError::DockerResponseServerError {
                        status_code: 404, ..
                    } => DockerError::ImageMissing {
                        image: image.to_string(),
                        hint: "the registry has no such image",
                    },
                    error => self.engine_error("pull the image", error),
                });
            }
        }
        Ok(())
    }

    /// A bollard error as a step error: a lost connection is `Unavailable`.
    fn engine_error(&self, operation: &'static str, error: BollardError) -> DockerError {
        if connection_error(&error).is_some() {
            return DockerError::Unavailable {
                socket: self.socket.clone(),
                reason: bollard_reason(&error),
                hint: UNAVAILABLE_HINT,
            };
        }
        let message = match &error {
            BollardError::DockerResponseServerError { message, .. } => message.clone(),
            other => other.to_string(),
        };
        DockerError::Engine {
            operation,
            message: proto::text::bounded(&message, 512).into_owned(),
        }
    }
}

/// The error a run ends with when it is cancelled or its deadline passes.
async fn stop_signal(
    cancel: &CancellationToken,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> DockerError {
    tokio::select! {
        biased;
        () = cancel.cancelled() => DockerError::Cancelled,
        () = tokio::time::sleep_until(deadline) => DockerError::Timeout { after: timeout },
    }
}

fn default_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

fn has_parent_component(path: &Path) -> bool {
    path.components()
        .any(|component| component == Component::ParentDir)
}

fn force_remove() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    }
}

fn is_not_found(error: &BollardError) -> bool {
    matches!(
        error,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The I/O error under a bollard error, when it is one of reaching the socket.
fn connection_error(error: &BollardError) -> Option<&io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return Some(io_error);
        }
        source = current.source();
    }
    if let BollardError::IOError { err } = error {
        return Some(err);
    }
    None
}

fn bollard_reason(error: &BollardError) -> String {
    match connection_error(error) {
        Some(io_error) => io_reason(io_error),
        None => proto::text::bounded(&error.to_string(), 512).into_owned(),
    }
}

fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "permission denied on the socket (is the agent's user in the docker group?)".into()
        }
        io::ErrorKind::ConnectionRefused => {
            "nobody listens on the socket (is the daemon running?)".into()
        }
        io::ErrorKind::NotFound => "no socket there (is the daemon installed and started?)".into(),
        _ => format!("{error}"),
    }
}

/// Names the container before it exists and removes it when the run ends
/// (explicitly) or is dropped (on the runtime, in the background).
struct ContainerGuard {
    client: bollard::Docker,
    name: String,
    armed: bool,
}

impl ContainerGuard {
    fn new(client: bollard::Docker) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "llmbasedos-agent-{}-{}-{nanos:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ContainerGuard {
            client,
            name,
            armed: true,
        }
    }

    async fn remove(&mut self) {
        remove_container(&self.client, &self.name).await;
        // Only now: if this future is dropped mid-removal, `Drop` tries again.
        self.armed = false;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let client = self.client.clone();
                let name = std::mem::take(&mut self.name);
                runtime.spawn(async move {
                    // Dropped during the create, the daemon may still be
                    // making the container: once more after a moment.
                    if !remove_container(&client, &name).await {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        remove_container(&client, &name).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(container = %self.name, "no runtime to remove the container; it is removed at the next start")
            }
        }
    }
}

/// Removes the container by name; false when there was none (never
/// created, or not yet).
async fn remove_container(client: &bollard::Docker, name: &str) -> bool {
    match client.remove_container(name, Some(force_remove())).await {
        Ok(()) => true,
        Err(error) if is_not_found(&error) => false,
        Err(error) => {
            tracing::warn!(container = %name, %error, "could not remove the container");
            true
        }
    }
}

/// One output stream: its first `limit` bytes, its last [`STDERR_TAIL`]
/// bytes, and how long it was.
#[derive(Default)]
struct Captured {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: u64,
}

impl Captured {
    fn push(&mut self, bytes: &[u8], limit: usize) {
        self.total += bytes.len() as u64;
        let room = limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        let keep = bytes.len().min(STDERR_TAIL);
        self.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        if self.tail.len() > 2 * STDERR_TAIL {
            self.tail.drain(..self.tail.len() - STDERR_TAIL);
        }
    }

    fn finish(&mut self) {
        if self.tail.len() > STDERR_TAIL {
            self.tail.drain(..self.tail.len() - STDERR_TAIL);
        }
    }
}

struct Output {
    stdout: Captured,
    stderr: Captured,
}

/// Reads the attach stream to its end, keeping what the limits allow; the
/// rest is read and dropped so the container never blocks on a full pipe.
async fn capture(
    mut stream: impl Stream<Item = Result<bollard::container::LogOutput, BollardError>> + Unpin,
    limit: usize,
) -> Result<Output, BollardError> {
    use bollard::container::LogOutput;
    let mut output = Output {
        stdout: Captured::default(),
        stderr: Captured::default(),
    };
    while let Some(chunk) = stream.next().await {
        match chunk? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                output.stdout.push(&message, limit)
            }
            LogOutput::StdErr { message } => output.stderr.push(&message, limit),
            LogOutput::StdIn { .. } => {}
        }
    }
    output.stdout.finish();
    output.stderr.finish();
    Ok(output)
}

fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Seconds(f64),
        Text(String),
    }
    let invalid = || {
        serde::de::Error::custom(
            "expected seconds or a duration such as \"500ms\", \"30s\", \"5m\", \"1h\"",
        )
    };
    let seconds = match Given::deserialize(deserializer)? {
        Given::Seconds(seconds) => seconds,
        Given::Text(text) => {
            let text = text.trim();
            let (number, scale) = if let Some(number) = text.strip_suffix("ms") {
                (number, 0.001)
            } else if let Some(number) = text.strip_suffix('s') {
                (number, 1.0)
            } else if let Some(number) = text.strip_suffix('m') {
                (number, 60.0)
            } else if let Some(number) = text.strip_suffix('h') {
                (number, 3600.0)
            } else {
                (text, 1.0)
            };
            number.trim().parse::<f64>().map_err(|_| invalid())? * scale
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<DockerSpec, yaml_serde::Error> {
        yaml_serde::from_str(yaml)
    }

    #[test]
    fn timeouts_parse_from_seconds_and_suffixed_text() {
        for (given, expected) in [
            ("2", Duration::from_secs(2)),
            ("0.5", Duration::from_millis(500)),
            ("\"250ms\"", Duration::from_millis(250)),
            ("\"30s\"", Duration::from_secs(30)),
            ("\"5m\"", Duration::from_secs(300)),
            ("\"1h\"", Duration::from_secs(3600)),
        ] {
            let parsed = spec(&format!("image: x\ntimeout: {given}\n")).unwrap();
            assert_eq!(parsed.timeout, expected, "{given}");
        }
        for given in ["\"soon\"", "-1", "\"5d\""] {
            assert!(
                spec(&format!("image: x\ntimeout: {given}\n")).is_err(),
                "{given}"
            );
        }
        let defaults = spec("image: x\n").unwrap();
        assert_eq!(defaults.timeout, DEFAULT_TIMEOUT);
        assert_eq!(defaults.output_limit, DEFAULT_OUTPUT_LIMIT);
        assert!(
            spec("image: x\nprivileged: true\n").is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn capture_keeps_the_head_within_the_limit_and_the_tail() {
        let mut captured = Captured::default();
        for _ in 0..100 {
            captured.push(&[b'a'; 100], 250);
        }
        captured.push(b"the end", 250);
        captured.finish();
        assert_eq!(captured.head.len(), 250);
        assert_eq!(captured.total, 10_007);
        assert_eq!(captured.tail.len(), STDERR_TAIL);
        assert!(captured.tail.ends_with(b"the end"));
    }
}
