//! The `docker` step runner against a real dockerd (see support/dockerd.rs):
//! what a step prints, the limits, the policy's refusals, and that no
//! container outlives its step, whichever way the step ends.

#[path = "support/dockerd.rs"]
mod dockerd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::docker::{
    Docker, DockerError, DockerMount, DockerOutput, DockerPolicy, DockerSpec, MountRefusal,
};
use tokio_util::sync::CancellationToken;

fn policy(allowed_mounts: &[&Path]) -> DockerPolicy {
    DockerPolicy {
        socket: Some(dockerd::shared().socket().to_path_buf()),
        allowed_mounts: allowed_mounts
            .iter()
            .map(|root| root.to_path_buf())
            .collect(),
        ..DockerPolicy::default()
    }
}

fn shell(script: &str) -> DockerSpec {
    DockerSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        timeout: Duration::from_secs(60),
        output_limit: 64 * 1024,
        ..DockerSpec::new(dockerd::IMAGE)
    }
}

async fn connect(policy: DockerPolicy) -> Docker {
    Docker::connect(policy)
        .await
        .expect("connect to the test dockerd")
}

async fn run(docker: &Docker, spec: &DockerSpec) -> Result<DockerOutput, DockerError> {
    docker.run(spec, CancellationToken::new()).await
}

async fn assert_no_container_left() {
    let left = dockerd::shared().containers().await;
    assert!(left.is_empty(), "containers left behind: {left:?}");
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_apart() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let mut spec = shell("echo \"hello $GREETING\"; echo oops >&2");
    spec.env.insert("GREETING".into(), "world".into());
    let output = run(&docker, &spec).await.expect("echo runs");
    assert_eq!(
        output,
        DockerOutput {
            exit_code: 0,
            stdout: "hello world\n".into(),
            stderr: "oops\n".into(),
            truncated: false
        }
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn output_beyond_the_limit_is_cut_and_marked() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let mut spec = shell("yes | head -c 300000; yes e | head -c 5000 >&2");
    spec.output_limit = 1000;
    let output = run(&docker, &spec).await.expect("the step runs to its end");
    assert_eq!(output.stdout.len(), 1000);
    assert_eq!(output.stderr.len(), 1000);
    assert!(output.stdout.starts_with("y\ny\n"));
    assert!(output.truncated);
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_non_zero_exit_is_exited_with_the_end_of_stderr() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let error = run(
        &docker,
        &shell("yes noise | head -c 10000 >&2; echo boom >&2; exit 3"),
    )
    .await
    .unwrap_err();
    let DockerError::Exited {
        code,
        stderr_tail,
        oom_killed,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(code, 3);
    assert!(!oom_killed);
    assert!(stderr_tail.ends_with("boom\n"), "{stderr_tail:?}");
    assert_eq!(stderr_tail.len(), agent::docker::STDERR_TAIL);
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_hanging_step_is_killed_by_its_timeout_and_removed() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let mut spec = shell("echo started; sleep 600");
    spec.timeout = Duration::from_secs(2);
    let error = run(&docker, &spec).await.unwrap_err();
    assert!(
        matches!(error, DockerError::Timeout { after } if after == Duration::from_secs(2)),
        "{error:?}"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn cancel_kills_the_running_container_and_removes_it() {
    let _serial = dockerd::exclusive().await;
    let docker = std::sync::Arc::new(connect(policy(&[])).await);
    let cancel = CancellationToken::new();
    let step = tokio::spawn({
        let (docker, cancel) = (docker.clone(), cancel.clone());
        async move { docker.run(&shell("sleep 600"), cancel).await }
    });
    let daemon = dockerd::shared();
    daemon
        .wait_for("the step's container runs", async |daemon| {
            daemon.running().await.len() == 1
        })
        .await;
    cancel.cancel();
    let error = step.await.expect("the step task").unwrap_err();
    assert!(matches!(error, DockerError::Cancelled), "{error:?}");
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_step_dropped_mid_run_still_has_its_container_removed() {
    let _serial = dockerd::exclusive().await;
    let docker = std::sync::Arc::new(connect(policy(&[])).await);
    let step = tokio::spawn({
        let docker = docker.clone();
        async move {
            docker
                .run(&shell("sleep 600"), CancellationToken::new())
                .await
        }
    });
    let daemon = dockerd::shared();
    daemon
        .wait_for("the step's container runs", async |daemon| {
            daemon.running().await.len() == 1
        })
        .await;
    step.abort();
    assert!(step.await.unwrap_err().is_cancelled());
    // The guard removes it in the background.
    daemon
        .wait_for("the dropped step's container is removed", async |daemon| {
            daemon.containers().await.is_empty()
        })
        .await;
}

#[tokio::test]
async fn leftovers_of_a_killed_agent_are_removed_at_the_next_start() {
    let _serial = dockerd::exclusive().await;
    let daemon = dockerd::shared();
    // A creator that cannot exist (above the kernel's largest pid), a live
    // one (this test process: another agent's step), and one not ours.
    let dead = format!("{}=4194305", agent::docker::LABEL);
    let alive = format!("{}={}", agent::docker::LABEL, std::process::id());
    for label in [dead.as_str(), alive.as_str(), "other=1"] {
        let status = daemon
            .cli(&["create", "--label", label, dockerd::IMAGE, "true"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
    let docker = connect(policy(&[])).await;
    assert_eq!(
        docker.remove_leftovers().await.unwrap(),
        1,
        "only the dead creator's"
    );
    let others = daemon.containers().await;
    assert_eq!(
        others.len(),
        2,
        "a live agent's container and one not the agent's stay"
    );
    for other in &others {
        let status = daemon
            .cli(&["rm", "-f", other])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
}

/// A root the policy allows, a file in it, and a directory beside it that
/// it does not allow.
struct MountFixture {
    _dir: tempfile::TempDir,
    allowed: PathBuf,
    outside: PathBuf,
}

fn mount_fixture() -> MountFixture {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(allowed.join("data")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(allowed.join("data/in.txt"), "from the host\n").unwrap();
    std::fs::write(outside.join("secret.txt"), "not for containers\n").unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
    MountFixture {
        _dir: dir,
        allowed,
        outside,
    }
}

fn mount(source: impl Into<PathBuf>, target: &str, writable: bool) -> DockerMount {
    DockerMount {
        source: source.into(),
        target: target.into(),
        writable,
    }
}

#[tokio::test]
async fn mounts_outside_the_allow_list_are_refused_before_docker_is_asked() {
    let _serial = dockerd::exclusive().await;
    let fixture = mount_fixture();
    let allowed = &fixture.allowed;
    let docker = connect(policy(&[allowed])).await;
    let table: Vec<(DockerMount, MountRefusal)> = vec![
        (
            mount("/etc", "/data", false),
            MountRefusal::OutsideAllowedRoots,
        ),
        (
            mount(&fixture.outside, "/data", false),
            MountRefusal::OutsideAllowedRoots,
        ),
        (
            mount(allowed.join("escape"), "/data", false),
            MountRefusal::OutsideAllowedRoots,
        ),
        (
            mount(allowed.join("escape/secret.txt"), "/data/s", false),
            MountRefusal::OutsideAllowedRoots,
        ),
        (
            mount(allowed.join("../outside"), "/data", false),
            MountRefusal::ParentComponent,
        ),
        (
            mount(allowed.join("data/../data"), "/data", false),
            MountRefusal::ParentComponent,
        ),
        (
            mount("relative/data", "/data", false),
            MountRefusal::NotAbsolute,
        ),
        (
            mount(allowed.join("missing"), "/data", false),
            MountRefusal::Unresolvable,
        ),
        (
            mount(allowed.join("data"), "/data", true),
            MountRefusal::WritableNotAllowed,
        ),
        (
            mount(allowed.join("data"), "data", false),
            MountRefusal::NotAbsolute,
        ),
        (
            mount(allowed.join("data"), "/data/../etc", false),
            MountRefusal::ParentComponent,
        ),
        (
            mount(allowed.join("data"), "/", false),
            MountRefusal::ForbiddenTarget,
        ),
        (
            mount(allowed.join("data"), "/proc/sys", false),
            MountRefusal::ForbiddenTarget,
        ),
    ];
    for (asked, expected) in table {
        let mut spec = shell("cat /data/*");
        spec.mounts = vec![asked.clone()];
        match run(&docker, &spec).await {
            Err(DockerError::MountRefused { reason, .. }) => {
                assert_eq!(reason, expected, "{asked:?}")
            }
            other => panic!("{asked:?}: {other:?}"),
        }
    }
    let none_allowed = connect(policy(&[])).await;
    let mut spec = shell("true");
    spec.mounts = vec![mount(allowed.join("data"), "/data", false)];
    let error = run(&none_allowed, &spec).await.unwrap_err();
    assert!(
        matches!(
            error,
            DockerError::MountRefused {
                reason: MountRefusal::NoRootsConfigured,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_read_only_mount_is_read_and_cannot_be_written() {
    let _serial = dockerd::exclusive().await;
    let fixture = mount_fixture();
    let docker = connect(policy(&[&fixture.allowed])).await;
    let mut read = shell("cat /data/in.txt");
    read.mounts = vec![mount(fixture.allowed.join("data"), "/data", false)];
    assert_eq!(run(&docker, &read).await.unwrap().stdout, "from the host\n");

    let mut write = shell("echo changed > /data/in.txt; echo new > /data/new.txt");
    write.mounts = read.mounts.clone();
    let error = run(&docker, &write).await.unwrap_err();
    let DockerError::Exited { stderr_tail, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        stderr_tail.contains("Read-only file system"),
        "{stderr_tail}"
    );
    assert_eq!(
        std::fs::read_to_string(fixture.allowed.join("data/in.txt")).unwrap(),
        "from the host\n"
    );
    assert!(!fixture.allowed.join("data/new.txt").exists());
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_writable_mount_is_written_when_the_policy_allows_it() {
    let _serial = dockerd::exclusive().await;
    let fixture = mount_fixture();
    let docker = connect(DockerPolicy {
        allow_writable_mounts: true,
        ..policy(&[&fixture.allowed])
    })
    .await;
    let mut spec = shell("echo written > /data/out.txt");
    spec.mounts = vec![mount(fixture.allowed.join("data"), "/data", true)];
    run(&docker, &spec).await.expect("the write succeeds");
    assert_eq!(
        std::fs::read_to_string(fixture.allowed.join("data/out.txt")).unwrap(),
        "written\n"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn there_is_no_network_by_default_and_none_without_the_policy() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let script = "ip -o link | cut -d: -f2; echo routes: $(ip route | wc -l)";
    let output = run(&docker, &shell(script)).await.unwrap();
    assert_eq!(
        output.stdout.split_whitespace().collect::<Vec<_>>(),
        ["lo", "routes:", "0"],
        "only the loopback interface, and no route anywhere"
    );

    for network in ["bridge", "host", "container:other"] {
        let mut spec = shell("true");
        spec.network = Some(network.into());
        let error = run(&docker, &spec).await.unwrap_err();
        assert!(
            matches!(&error, DockerError::NetworkRefused { network: refused, .. } if refused == network),
            "{error:?}"
        );
    }
    // Even a policy that allows networks never shares the host's.
    let networked = connect(DockerPolicy {
        allow_network: true,
        ..policy(&[])
    })
    .await;
    let mut spec = shell("true");
    spec.network = Some("host".into());
    let error = run(&networked, &spec).await.unwrap_err();
    assert!(
        matches!(error, DockerError::NetworkRefused { .. }),
        "{error:?}"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn limits_are_set_on_the_containers_cgroup() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    // cgroup v1 (this machine) or v2 files, whichever the kernel has.
    let mut spec = shell(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
         cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max",
    );
    spec.memory_bytes = Some(64 << 20);
    spec.pids = Some(50);
    spec.cpus = Some(0.5);
    let output = run(&docker, &spec).await.unwrap();
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(
        lines,
        ["67108864", "50", "50000"],
        "memory, pids, CPU quota per 100 ms period"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_step_over_its_memory_limit_is_killed_and_says_so() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    // A 64 MiB shell variable under a 16 MiB limit (and no swap beyond it).
    let mut spec = shell("x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}");
    spec.memory_bytes = Some(16 << 20);
    let error = run(&docker, &spec).await.unwrap_err();
    assert!(
        matches!(
            error,
            DockerError::Exited {
                oom_killed: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn steps_run_without_privileges() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let output = run(
        &docker,
        &shell("grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status"),
    )
    .await
    .unwrap();
    let fields: BTreeMap<&str, &str> = output
        .stdout
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k, v.trim()))
        .collect();
    assert_eq!(
        fields["CapEff"], "0000000000000000",
        "every capability dropped"
    );
    assert_eq!(fields["CapBnd"], "0000000000000000", "none can be regained");
    assert_eq!(fields["NoNewPrivs"], "1");

    let mut read_only = shell("touch /made-here");
    read_only.read_only_rootfs = true;
    let error = run(&docker, &read_only).await.unwrap_err();
    let DockerError::Exited { stderr_tail, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(
        stderr_tail.contains("Read-only file system"),
        "{stderr_tail}"
    );
    assert_no_container_left().await;
}

#[tokio::test]
async fn a_missing_image_is_an_error_and_nothing_is_pulled() {
    let _serial = dockerd::exclusive().await;
    let docker = connect(policy(&[])).await;
    let mut spec = shell("true");
    spec.image = "llmbasedos-test/not-here:1".into();
    let error = run(&docker, &spec).await.unwrap_err();
    assert!(
        matches!(&error, DockerError::ImageMissing { image, .. } if image == "llmbasedos-test/not-here:1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("allow_pull"), "{error}");
    assert_no_container_left().await;
}

#[tokio::test]
async fn docker_missing_or_down_is_unavailable_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-docker.sock");
    // A socket file nobody listens on: a daemon that is down.
    let down = dir.path().join("down.sock");
    drop(std::os::unix::net::UnixListener::bind(&down).unwrap());
    for socket in [missing, down] {
        let error = Docker::connect(DockerPolicy {
            socket: Some(socket.clone()),
            ..DockerPolicy::default()
        })
        .await
        .unwrap_err();
        let DockerError::Unavailable {
            socket: named,
            hint,
            ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(named, &socket);
        assert!(hint.contains("docker group"), "{hint}");
        assert_eq!(error.kind(), "docker_unavailable");
        assert!(error.to_string().contains("install Docker"), "{error}");
    }
}
