//! `llmbasedos-web`: the web console. A small process of its own on
//! 127.0.0.1:8081 (or the socket systemd passes), a client of the gateway
//! over its UNIX socket (tools, licence and usage), of the service manager
//! through the `services` crate (systemd or `llmbasedos up`), rendering
//! HTML on the server with one same-origin script and style sheet.
//!
//! - [`config`]: `web.yaml`, in two stages.
//! - [`bootstrap`]: one-time sign-in tokens (`llmbasedos web` mints them).
//! - [`session`]: session cookies and their CSRF tokens.
//! - [`app`]: the router and the checks every request passes (Host,
//!   Origin, session, CSRF, security headers), the idle exit.
//! - [`pages`]: overview, tools, logs, licence; [`form`]: a form from an
//!   input schema; [`calls`]: tool calls with progress and cancellation.
//! - [`gateway`], [`system`]: the gateway and the service manager.

pub mod app;
pub mod assets;
pub mod bootstrap;
pub mod calls;
pub mod config;
pub mod form;
pub mod gateway;
pub mod pages;
pub mod session;
pub mod system;

use std::sync::Arc;

/// Serves the console on `listener` until `shutdown` is cancelled or it
/// has been idle for the configured time.
pub async fn serve(
    config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    let system = system::System::new(
        config.services.as_deref(),
        client::cli::default_runtime_dir(),
    )
    .map_err(std::io::Error::other)?;
    let app = Arc::new(app::App {
        hosts: app::hosts_for(port, &config.extra_hosts),
        sessions: session::Sessions::new(config.session_idle),
        gateway: Arc::new(gateway::Gateway::new(
            config.gateway_socket.clone(),
            config.gateway_identity.clone(),
        )),
        calls: calls::Calls::default(),
        system,
        activity: Arc::new(app::Activity::default()),
        shutdown: shutdown.clone(),
        config,
    });
    if let Some(idle) = app.config.idle_exit {
        tokio::spawn(app::idle_exit(app.clone(), idle));
    }
    let router = app::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
