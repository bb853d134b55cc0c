//! systemd over the system bus (`org.freedesktop.systemd1`, plain method
//! calls with zbus) and the journal (`journalctl` children, module
//! `journal`).
//!
//! Control is allowed only for a unit matching
//! `^llmbasedos-[a-z0-9-]+\.(service|socket)$` that [`Systemd::list`]
//! returned; the check happens before the StartUnit/StopUnit/RestartUnit
//! call. systemd asks polkit for everyone but root: the package's rule lets
//! the console's user `llmweb` manage `llmbasedos-*.service` units and
//! nothing else, so a bug here still cannot reach another unit.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::AsyncBufReadExt;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use crate::{Action, Error, LogEntry, LogFilter, LogPage, Service, State, filter, journal};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const PATTERN: &str = "llmbasedos-*";
/// How long a start or stop job may take before control() gives up
/// waiting (the job goes on; the list shows where it got).
const JOB_WAIT: Duration = Duration::from_secs(90);

/// A connection to systemd on the system bus.
#[derive(Debug)]
pub struct Systemd {
    bus: Connection,
}

/// One row of ListUnitsByPatterns.
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// What list() reads of one unit.
#[derive(Debug, Default)]
struct UnitState {
    active: String,
    sub: String,
    /// µs since the epoch; 0 when it never happened.
    active_enter: u64,
    inactive_enter: u64,
    state_change: u64,
    /// Service only.
    result: Option<String>,
    memory: Option<u64>,
    pid: Option<u32>,
    /// Service only: whether it ever ran (ExecMainStartTimestamp).
    ever_started: bool,
}

impl Systemd {
    pub(crate) async fn connect() -> Result<Systemd, Error> {
        let bus = Connection::system()
            .await
            .map_err(|error| Error::Unavailable {
                what: "systemd (the system bus)".to_owned(),
                hint: format!(
                    "cannot connect to the system bus ({error}); is dbus running? Without systemd, start the stack with `llmbasedos up`"
                ),
            })?;
        Ok(Systemd { bus })
    }

    async fn call<B, R>(
        &self,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<R, Error>
    where
        B: serde::Serialize + zbus::wire::DynamicType,
        R: for<'d> zbus::wire::DynamicDeserialize<'d>,
    {
        let reply = self
            .bus
            .call_method(Some(DESTINATION), path, Some(interface), method, body)
            .await
            .map_err(|error| bus_error(method, error))?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|error| Error::Failed {
                what: format!("systemd's {method}"),
                detail: format!("unexpected answer: {error}"),
            })
    }

    async fn properties(
        &self,
        path: &str,
        interface: &str,
    ) -> Result<HashMap<String, OwnedVariant>, Error> {
        self.call(path, PROPERTIES, "GetAll", &(interface,)).await
    }

    /// Every loaded llmbasedos unit, and the installed ones not loaded yet
    /// (loaded now, which changes nothing for them), by name → object path.
    async fn units(&self) -> Result<BTreeMap<String, OwnedObjectPath>, Error> {
        let states: Vec<&str> = Vec::new();
        let rows: Vec<UnitRow> = self
            .call(
                MANAGER_PATH,
                MANAGER,
                "ListUnitsByPatterns",
                &(states.clone(), vec![PATTERN]),
            )
            .await?;
        let mut units: BTreeMap<String, OwnedObjectPath> = rows
            .into_iter()
            .filter(|row| filter::is_unit_name(&row.0))
            .map(|row| (row.0, row.6))
            .collect();
        let files: Vec<(String, String)> = self
            .call(
                MANAGER_PATH,
                MANAGER,
                "ListUnitFilesByPatterns",
                &(states, vec![PATTERN]),
            )
            .await?;
        for (path, _enablement) in files {
            let Some(name) = path.rsplit('/').next() else {
                continue;
            };
            if !filter::is_unit_name(name) || units.contains_key(name) {
                continue;
            }
            let object: OwnedObjectPath = self
                .call(MANAGER_PATH, MANAGER, "LoadUnit", &(name,))
                .await?;
            units.insert(name.to_owned(), object);
        }
        Ok(units)
    }

    async fn unit_state(&self, name: &str, path: &OwnedObjectPath) -> Result<UnitState, Error> {
        let unit = self.properties(path.as_str(), UNIT).await?;
        let mut state = UnitState {
            active: text(&unit, "ActiveState"),
            sub: text(&unit, "SubState"),
            active_enter: number(&unit, "ActiveEnterTimestamp").unwrap_or(0),
            inactive_enter: number(&unit, "InactiveEnterTimestamp").unwrap_or(0),
            state_change: number(&unit, "StateChangeTimestamp").unwrap_or(0),
            ..UnitState::default()
        };
        if name.ends_with(".service") {
            let service = self.properties(path.as_str(), SERVICE).await?;
            state.result = Some(text(&service, "Result"));
            state.memory = number(&service, "MemoryCurrent").filter(|bytes| *bytes != u64::MAX);
            state.pid = service
                .get("MainPID")
                .and_then(|value| u32::try_from(value).ok())
                .filter(|pid| *pid != 0);
            state.ever_started = number(&service, "ExecMainStartTimestamp").unwrap_or(0) != 0;
        } else {
            // A socket's Result, on the Socket interface; its ActiveState
            // "failed" says enough, and the reason is read only then.
            if state.active == "failed" {
                let socket = self
                    .properties(path.as_str(), "org.freedesktop.systemd1.Socket")
                    .await?;
                state.result = Some(text(&socket, "Result"));
            }
        }
        Ok(state)
    }

    pub(crate) async fn list(&self) -> Result<Vec<Service>, Error> {
        let units = self.units().await?;
        // name → (service unit, socket unit)
        let mut grouped: BTreeMap<String, (Option<UnitState>, Option<UnitState>)> = BTreeMap::new();
        for (unit, path) in &units {
            let Some(name) = filter::service_of_unit(unit) else {
                continue;
            };
            let state = self.unit_state(unit, path).await?;
            let entry = grouped.entry(name.to_owned()).or_default();
            if unit.ends_with(".service") {
                entry.0 = Some(state);
            } else {
                entry.1 = Some(state);
            }
        }
        Ok(grouped
            .into_iter()
            .filter_map(|(name, (service, socket))| {
                let service = service?;
                let unit = format!("llmbasedos-{name}.service");
                Some(describe(name, unit, &service, socket.as_ref()))
            })
            .collect())
    }

    /// The unit `name` names, if it may be controlled: `fs` →
    /// `llmbasedos-fs.service`; a full unit name must match the pattern.
    fn unit_of(name: &str) -> Result<String, Error> {
        if filter::is_unit_name(name) {
            return Ok(name.to_owned());
        }
        if filter::is_service_name(name) {
            return Ok(format!("llmbasedos-{name}.service"));
        }
        Err(Error::NotOurs {
            unit: filter::quoted(name),
        })
    }

    pub(crate) async fn control(&self, name: &str, action: Action) -> Result<(), Error> {
        let unit = Systemd::unit_of(name)?;
        let units = self.units().await?;
        let Some(path) = units.get(&unit) else {
            return Err(Error::NoSuchService {
                name: filter::quoted(name),
            });
        };
        let method = match action {
            Action::Start => "StartUnit",
            Action::Stop => "StopUnit",
            Action::Restart => "RestartUnit",
        };
        let job: OwnedObjectPath = self
            .call(MANAGER_PATH, MANAGER, method, &(unit.as_str(), "replace"))
            .await?;
        self.wait_for_job(&job).await;
        let state = self.unit_state(&unit, path).await?;
        let failed = state.active == "failed"
            || (action != Action::Stop
                && state.active != "active"
                && state.active != "activating"
                && state
                    .result
                    .as_deref()
                    .is_some_and(|result| result != "success"));
        if failed {
            return Err(Error::Failed {
                what: format!("{} {unit}", action.as_str()),
                detail: format!(
                    "the unit is {} ({}); its log says why",
                    state.active,
                    state.result.as_deref().unwrap_or(&state.sub)
                ),
            });
        }
        Ok(())
    }

    /// Waits until systemd has removed `job` (done, failed or replaced),
    /// at most [`JOB_WAIT`]. A job that is gone answers UnknownObject.
    async fn wait_for_job(&self, job: &OwnedObjectPath) {
        let deadline = tokio::time::Instant::now() + JOB_WAIT;
        while tokio::time::Instant::now() < deadline {
            let state: Result<OwnedVariant, Error> = self
                .call(
                    job.as_str(),
                    PROPERTIES,
                    "Get",
                    &("org.freedesktop.systemd1.Job", "State"),
                )
                .await;
            if state.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The services of `filter` must be ones list() returns.
    async fn check_services(&self, filter: &LogFilter) -> Result<(), Error> {
        if filter.services.is_empty() {
            return Ok(());
        }
        let units = self.units().await?;
        for name in &filter.services {
            if !units.contains_key(&format!("llmbasedos-{name}.service")) {
                return Err(Error::NoSuchService {
                    name: filter::quoted(name),
                });
            }
        }
        Ok(())
    }

    pub(crate) async fn logs(
        &self,
        filter: &LogFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<LogPage, Error> {
        self.check_services(filter).await?;
        if let Some(cursor) = before {
            check_cursor(cursor)?;
        }
        journal::page(filter, before, limit).await
    }

    pub(crate) async fn follow(
        &self,
        filter: &LogFilter,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>, Error> {
        self.check_services(filter).await?;
        let mut argv = journal::argv(filter);
        argv.extend(["--follow".to_owned(), "--lines=0".to_owned()]);
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| journal::unavailable(&error))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(Error::Failed {
                what: "journalctl --follow".to_owned(),
                detail: "no output pipe".to_owned(),
            });
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            // The child dies with this task (kill_on_drop).
            let _child = child;
            let mut lines = tokio::io::BufReader::with_capacity(64 * 1024, stdout).lines();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => {
                            if let Some(entry) = journal::parse_line(&line)
                                && sender.send(entry).await.is_err()
                            {
                                return;
                            }
                        }
                        _ => return,
                    },
                    () = sender.closed() => return,
                }
            }
        });
        Ok(receiver)
    }
}

/// A cursor as journalctl prints them (`s=…;i=…;b=…;m=…;t=…;x=…`): given
/// back by a client, it reaches journalctl as one `--cursor=` argument, so
/// it only needs to be bounded and free of control characters.
fn check_cursor(cursor: &str) -> Result<(), Error> {
    let plausible = !cursor.is_empty()
        && cursor.len() <= 256
        && cursor
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"=;-_".contains(&byte));
    if plausible {
        Ok(())
    } else {
        Err(Error::BadFilter {
            field: "before".to_owned(),
            hint: "a cursor from a log page's `older`, unchanged".to_owned(),
        })
    }
}

/// The operator's view of one service from its service unit and socket.
fn describe(
    name: String,
    unit: String,
    service: &UnitState,
    socket: Option<&UnitState>,
) -> Service {
    let socket_listens = socket.is_some_and(|socket| socket.active == "active");
    let socket_failed = socket.is_some_and(|socket| socket.active == "failed");
    let failed_result = service
        .result
        .as_deref()
        .filter(|result| *result != "success")
        .map(str::to_owned);
    let (state, since) = match service.active.as_str() {
        "active" | "reloading" => (State::Running, service.active_enter),
        "activating" => (State::Activating, service.state_change),
        "deactivating" => (State::Deactivating, service.state_change),
        "failed" => (State::Failed, service.state_change),
        _ if socket_failed => (
            State::Failed,
            socket.map_or(0, |socket| socket.state_change),
        ),
        _ if failed_result.is_some() => (State::Failed, service.inactive_enter),
        _ if socket_listens && service.ever_started => (State::IdleExited, service.inactive_enter),
        _ if socket_listens => (
            State::Listening,
            socket.map_or(0, |socket| socket.active_enter),
        ),
        _ => (State::Inactive, service.state_change),
    };
    let socket_error = socket
        .and_then(|socket| socket.result.as_deref())
        .filter(|result| *result != "success")
        .map(|result| format!("socket: {result}"));
    let running = matches!(state, State::Running | State::Deactivating);
    Service {
        name,
        unit,
        state,
        since: (since != 0).then(|| UNIX_EPOCH + Duration::from_micros(since)),
        memory_bytes: service.memory.filter(|_| running),
        pid: service
            .pid
            .filter(|_| running || state == State::Activating),
        last_error: match (failed_result, socket_error) {
            (Some(service), Some(socket)) => Some(format!("{service}; {socket}")),
            (service, socket) => service.or(socket),
        },
    }
}

fn text(properties: &HashMap<String, OwnedVariant>, name: &str) -> String {
    properties
        .get(name)
        .and_then(|value| <&str>::try_from(value).ok())
        .unwrap_or_default()
        .to_owned()
}

fn number(properties: &HashMap<String, OwnedVariant>, name: &str) -> Option<u64> {
    properties
        .get(name)
        .and_then(|value| u64::try_from(value).ok())
}

/// A D-Bus failure as an [`Error`] kind: polkit's refusal is
/// [`Error::Denied`], a unit systemd does not know [`Error::NoSuchService`].
fn bus_error(method: &str, error: zbus::Error) -> Error {
    let denied = || {
        Error::Denied {
        hint: "systemd refused (polkit): only root and the console's user llmweb may manage llmbasedos-*.service units (the llmbasedos-web package's polkit rule); run as one of them".to_owned(),
    }
    };
    match &error {
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::AccessDenied(_)
            | zbus::fdo::Error::InteractiveAuthorizationRequired(_)
            | zbus::fdo::Error::AuthFailed(_) => return denied(),
            _ => {}
        },
        zbus::Error::MethodError(name, message, _) => {
            let name = name.as_str();
            if name == "org.freedesktop.systemd1.NoSuchUnit"
                || name == "org.freedesktop.systemd1.LoadFailed"
            {
                return Error::NoSuchService {
                    name: message.clone().unwrap_or_default(),
                };
            }
            if name.ends_with("AccessDenied") || name.ends_with("InteractiveAuthorizationRequired")
            {
                return denied();
            }
        }
        zbus::Error::InputOutput(_) | zbus::Error::Connection(..) => {
            return Error::Unavailable {
                what: "systemd (the system bus)".to_owned(),
                hint: format!("the connection broke ({error}); is dbus running?"),
            };
        }
        _ => {}
    }
    Error::Failed {
        what: format!("systemd's {method}"),
        detail: error.to_string().chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(active: &str, result: Option<&str>, ever_started: bool) -> UnitState {
        UnitState {
            active: active.to_owned(),
            sub: String::new(),
            active_enter: 1,
            inactive_enter: 2,
            state_change: 3,
            result: result.map(str::to_owned),
            memory: Some(4096),
            pid: Some(42),
            ever_started,
        }
    }

    #[test]
    fn states_come_from_the_service_and_its_socket() {
        let listening = unit("active", None, false);
        let failed_socket = unit("failed", Some("service-start-limit-hit"), false);
        let cases = [
            (unit("active", Some("success"), true), None, State::Running),
            (
                unit("inactive", Some("success"), false),
                Some(&listening),
                State::Listening,
            ),
            (
                unit("inactive", Some("success"), true),
                Some(&listening),
                State::IdleExited,
            ),
            (
                unit("inactive", Some("exit-code"), true),
                Some(&listening),
                State::Failed,
            ),
            (unit("failed", Some("signal"), true), None, State::Failed),
            (
                unit("inactive", Some("success"), true),
                Some(&failed_socket),
                State::Failed,
            ),
            (
                unit("inactive", Some("success"), true),
                None,
                State::Inactive,
            ),
            (
                unit("activating", Some("success"), true),
                None,
                State::Activating,
            ),
        ];
        for (service, socket, want) in cases {
            let described = describe(
                "fs".into(),
                "llmbasedos-fs.service".into(),
                &service,
                socket,
            );
            assert_eq!(described.state, want, "{service:?} {socket:?}");
            assert_eq!(described.memory_bytes.is_some(), want == State::Running);
        }
        let described = describe(
            "fs".into(),
            "u".into(),
            &unit("inactive", Some("success"), true),
            Some(&failed_socket),
        );
        assert_eq!(
            described.last_error.as_deref(),
            Some("socket: service-start-limit-hit")
        );
    }

    #[test]
    fn only_our_units_may_be_named_and_nothing_is_asked_before() {
        for (name, ours) in [
            ("fs", Some("llmbasedos-fs.service")),
            ("llmbasedos-fs.socket", Some("llmbasedos-fs.socket")),
            ("ssh.service", None),
            ("ssh", Some("llmbasedos-ssh.service")),
            ("../ssh", None),
            ("llmbasedos-fs.service; ssh.service", None),
            ("", None),
        ] {
            match (Systemd::unit_of(name), ours) {
                (Ok(unit), Some(want)) => assert_eq!(unit, want),
                (Err(Error::NotOurs { .. }), None) => {}
                (other, _) => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn cursors_are_checked_before_they_reach_journalctl() {
        assert!(check_cursor("s=0a1b;i=2;b=3c;m=4d;t=5e;x=6f").is_ok());
        for bad in ["", "s=1 --grep=x", "s=1\n", &"a".repeat(300)] {
            assert!(check_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
