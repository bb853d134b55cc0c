//! Services and logs through the `services` crate: systemd (D-Bus and the
//! journal) or `llmbasedos up`'s control socket. The manager is made on
//! first use and again after a failure (the bus or `up` may come later).

use std::path::PathBuf;
use std::sync::Arc;

use services::{Error, Manager};

/// How the console reaches the service manager.
#[derive(Debug)]
pub struct System {
    /// `None`: detect (`up`'s socket in `runtime_dir`, else systemd).
    choice: Choice,
    manager: tokio::sync::Mutex<Option<Arc<Manager>>>,
}

#[derive(Debug)]
enum Choice {
    Systemd,
    Up(PathBuf),
    Detect(PathBuf),
}

impl System {
    /// From the configuration's `services` (`systemd`, `up:<path>`, or
    /// unset: detected from `runtime_dir`).
    pub fn new(setting: Option<&str>, runtime_dir: PathBuf) -> Result<System, String> {
        let choice = match setting.map(str::trim) {
            None | Some("") => Choice::Detect(runtime_dir),
            Some("systemd") => Choice::Systemd,
            Some(other) => match other.strip_prefix("up:") {
                Some(path) if !path.is_empty() => Choice::Up(PathBuf::from(path)),
                _ => {
                    return Err(format!(
                        "services: {} is neither `systemd` nor `up:<path of up's control socket>`",
                        proto::text::echo(other)
                    ));
                }
            },
        };
        Ok(System {
            choice,
            manager: tokio::sync::Mutex::new(None),
        })
    }

    /// The manager, made now if need be.
    pub async fn manager(&self) -> Result<Arc<Manager>, Error> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = &*slot {
            return Ok(manager.clone());
        }
        let manager = Arc::new(match &self.choice {
            Choice::Systemd => Manager::systemd().await?,
            Choice::Up(path) => Manager::up(path.clone()),
            Choice::Detect(runtime_dir) => Manager::detect(runtime_dir).await?,
        });
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// Forgets the manager after an error that may mean it is gone.
    pub async fn forget(&self) {
        *self.manager.lock().await = None;
    }
}
