//! The pages and their API. Everything a service, a tool, a file or a log
//! line says is inserted as text by the template engine (maud escapes by
//! default; nothing here uses `PreEscaped` on outside text).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, plain};
use crate::session::Session;

/// Log entries on one page.
const LOG_PAGE: usize = 200;

fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/tools", "Tools"),
    ("/logs", "Logs"),
    ("/licence", "Licence"),
];

fn layout(app: &App, title: &str, active: &str, session: &Session, body: Markup) -> Response {
    page(
        StatusCode::OK,
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    meta name="csrf-token" content=(session.csrf);
                    title { (title) " · llmbasedos" }
                    link rel="stylesheet" href="/assets/app.css";
                    script src="/assets/app.js" defer {}
                }
                body {
                    a.skip href="#main" { "Skip to the content" }
                    header {
                        span.brand { "llmbasedos" }
                        nav aria-label="Pages" {
                            ul {
                                @for (href, name) in NAV {
                                    li { a href=(href) aria-current=[(*href == active).then_some("page")] { (name) } }
                                }
                                @for service in SERVICE_PAGES {
                                    @if app.gateway.knows_tool(service.actions[0].0) {
                                        li { a href=(service.path) aria-current=[(service.path == active).then_some("page")] { (service.title) } }
                                    }
                                }
                            }
                        }
                        button #logout type="button" { "Sign out" }
                    }
                    main #main tabindex="-1" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        },
    )
}

/// What a visitor without a session sees: the script on it redeems the
/// token in the URL's fragment.
fn sign_in() -> Response {
    page(
        StatusCode::OK,
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { "Sign in · llmbasedos" }
                    link rel="stylesheet" href="/assets/app.css";
                    script src="/assets/app.js" defer {}
                }
                body {
                    main #main.signin {
                        h1 { "llmbasedos console" }
                        p #signin-status role="status" {
                            "Not signed in. Run " code { "llmbasedos web" } " on this machine and open the one-time URL it prints (valid 5 minutes, once)."
                        }
                    }
                }
            }
        },
    )
}

fn problem(text: &str) -> Markup {
    html! { p.problem role="alert" { (proto::text::bounded(text, 2000)) } }
}

fn time_text(time: Option<SystemTime>) -> String {
    time.and_then(proto::time::rfc3339)
        .unwrap_or_else(|| "—".to_owned())
}

fn bytes_text(bytes: Option<u64>) -> String {
    match bytes {
        None => "—".to_owned(),
        Some(bytes) if bytes >= 1 << 20 => format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20)),
        Some(bytes) => format!("{} KiB", bytes / 1024),
    }
}

fn compact(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".to_owned(),
        Some(value) => proto::text::bounded(&value.to_string(), 400).into_owned(),
    }
}

/// `/`: services, the gateway's clients and tool count.
pub async fn overview(
    State(app): State<Arc<App>>,
    session: Option<Extension<Session>>,
) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    // The service manager and the gateway are asked at the same time.
    let services = async {
        match app.system.manager().await {
            Ok(manager) => match manager.list().await {
                Ok(list) => Ok(list),
                Err(error) => {
                    app.system.forget().await;
                    Err(error.to_string())
                }
            },
            Err(error) => Err(error.to_string()),
        }
    };
    let (services, usage, tools) =
        tokio::join!(services, licence_report(&app), app.gateway.tools());
    let body = html! {
        section aria-labelledby="services-h" {
            h2 #services-h { "Services" }
            @match &services {
                Err(error) => (problem(error)),
                Ok(list) if list.is_empty() => p { "No llmbasedos service is installed or running." },
                Ok(list) => div.scroll { table #services {
                    thead { tr { th { "Service" } th { "State" } th { "Since" } th { "Memory" } th { "PID" } th { "Last error" } th { "Control" } } }
                    tbody {
                        @for service in list {
                            tr data-service=(service.name) {
                                td { (service.name) br; small { code { (service.unit) } } }
                                td { span class=(format!("state state-{}", service.state.as_str())) { (service.state.as_str()) } }
                                td { (time_text(service.since)) }
                                td { (bytes_text(service.memory_bytes)) }
                                td { @if let Some(pid) = service.pid { (pid) } @else { "—" } }
                                td { @if let Some(error) = &service.last_error { (error) } @else { "—" } }
                                td.actions {
                                    @for action in ["start", "stop", "restart"] {
                                        button type="button" data-control=(action) data-service=(service.name) { (action) }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            p #control-status role="status" {}
        }
        section aria-labelledby="clients-h" {
            h2 #clients-h { "Gateway clients" }
            (clients_table(&usage))
        }
        section aria-labelledby="tools-h" {
            h2 #tools-h { "Tools" }
            @match &tools {
                Ok(tools) => p { (tools.len()) " tools offered by the gateway. " a href="/tools" { "Browse and call them" } "." },
                Err(error) => (problem(&error.to_string())),
            }
        }
    };
    layout(&app, "Overview", "/", &session, body)
}

/// Every client's usage when the gateway lets the console see it
/// (`mcp.licence.status`), else the console's own (`mcp.licence.check`).
async fn licence_report(app: &App) -> Result<Value, String> {
    match app.gateway.call("mcp.licence.status", None, None).await {
        Ok(status) => Ok(status),
        Err(crate::gateway::GatewayError::Server(_)) => app
            .gateway
            .call("mcp.licence.check", None, None)
            .await
            .map(|own| json!({ "licensed": own.get("licensed"), "clients": [own], "own_only": true }))
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

fn clients_table(report: &Result<Value, String>) -> Markup {
    let report = match report {
        Ok(report) => report,
        Err(error) => return problem(error),
    };
    let empty = Vec::new();
    let clients = report
        .get("clients")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    html! {
        @if report.get("licensed") == Some(&Value::Bool(false)) {
            p { "The gateway has no licence section: every client may do everything, without limits." }
        }
        @if report.get("own_only").is_some() {
            p.hint { "Only the console's own usage is shown: its tier does not include " code { "mcp.licence.status" } "." }
        }
        @if !clients.is_empty() {
            div.scroll { table #clients {
                thead { tr { th { "Client" } th { "Tier" } th { "Usage" } th { "Remaining" } } }
                tbody {
                    @for client in clients {
                        tr {
                            td { code { (client.get("client").and_then(Value::as_str).unwrap_or("—")) } }
                            td { (client.get("tier").and_then(Value::as_str).unwrap_or("—")) }
                            td { code { (compact(client.get("usage"))) } }
                            td { code { (compact(client.get("remaining"))) } }
                        }
                    }
                }
            } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Search {
    q: Option<String>,
}

/// `/tools`: every tool, searchable.
pub async fn tools(
    State(app): State<Arc<App>>,
    session: Option<Extension<Session>>,
    Query(search): Query<Search>,
) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    let query = search.q.unwrap_or_default();
    let needle = query.to_lowercase();
    let body = match app.gateway.tools().await {
        Err(error) => problem(&error.to_string()),
        Ok(mut tools) => {
            tools.sort_by(|a, b| a.name.cmp(&b.name));
            let shown: Vec<_> = tools
                .iter()
                .filter(|tool| {
                    needle.is_empty()
                        || tool.name.to_lowercase().contains(&needle)
                        || tool
                            .description
                            .as_deref()
                            .is_some_and(|text| text.to_lowercase().contains(&needle))
                })
                .collect();
            html! {
                form.search role="search" method="get" action="/tools" {
                    label for="tool-search" { "Search tools" }
                    input #tool-search type="search" name="q" value=(query) autocomplete="off";
                    button type="submit" { "Search" }
                }
                p #tool-count role="status" { (shown.len()) " of " (tools.len()) " tools" }
                ul #tool-list.cards {
                    @for tool in shown {
                        @let description = tool.description.as_deref().unwrap_or_default();
                        li data-search=(format!("{} {}", tool.name, description).to_lowercase()) {
                            a href=(format!("/tools/{}", tool.name)) { code { (tool.name) } }
                            @if let Some(title) = &tool.title { " " span { (title) } }
                            @if let Some(annotations) = &tool.annotations {
                                @if annotations.read_only_hint == Some(true) { " " span.badge { "read-only" } }
                                @else if annotations.destructive_hint != Some(false) { " " span.badge.warn { "may change things" } }
                            }
                            p.description { (proto::text::bounded(description.lines().next().unwrap_or_default(), 300)) }
                        }
                    }
                }
            }
        }
    };
    layout(&app, "Tools", "/tools", &session, body)
}

/// `/tools/<name>`: one tool, its form, and its result.
pub async fn tool(
    State(app): State<Arc<App>>,
    session: Option<Extension<Session>>,
    Path(name): Path<String>,
) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    let tools = match app.gateway.tools().await {
        Ok(tools) => tools,
        Err(error) => {
            return layout(
                &app,
                "Tool",
                "/tools",
                &session,
                problem(&error.to_string()),
            );
        }
    };
    let Some(tool) = tools.into_iter().find(|tool| tool.name == name) else {
        return layout(
            &app,
            "Tool",
            "/tools",
            &session,
            problem(&format!(
                "no tool named {} (the gateway's list may have changed)",
                proto::text::echo(&name)
            )),
        );
    };
    let body = html! {
        p { a href="/tools" { "← All tools" } }
        @if let Some(description) = &tool.description {
            div.description.prose { (description) }
        }
        form #tool-form data-tool=(tool.name) novalidate {
            (crate::form::fields(&tool.input_schema))
            div.buttons {
                button #call type="submit" { "Call " (tool.name) }
                button #cancel type="button" hidden { "Cancel" }
            }
        }
        div #progress-box hidden {
            progress #progress max="100" {}
            span #progress-text role="status" {}
        }
        section aria-labelledby="result-h" {
            h2 #result-h { "Result" }
            div #result aria-live="polite" { p.hint { "Not called yet." } }
        }
        details {
            summary { "Input schema" }
            pre.json { (serde_json::to_string_pretty(&tool.input_schema).unwrap_or_default()) }
        }
    };
    layout(&app, &tool.name, "/tools", &session, body)
}

#[derive(Debug, Deserialize)]
pub struct CallRequest {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// `POST /api/tools/call`: starts a call; its id.
pub async fn call_tool(
    State(app): State<Arc<App>>,
    axum::Json(request): axum::Json<CallRequest>,
) -> Response {
    let arguments = match request.arguments {
        Value::Null => json!({}),
        object @ Value::Object(_) => object,
        _ => return plain(StatusCode::BAD_REQUEST, "arguments must be a JSON object"),
    };
    tracing::info!(tool = %proto::text::escaped(&request.name), "tool called from the console");
    let id = app
        .calls
        .start(app.gateway.clone(), request.name, arguments);
    axum::Json(json!({ "id": id })).into_response()
}

/// `GET /api/calls/<id>/events`: `progress` events (JSON), then one
/// `result` (HTML, escaped here) or `failure` (text) event.
pub async fn call_events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(mut state) = app.calls.follow(&id) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no such call (it may have been forgotten)",
        );
    };
    let guard = app.activity.stream();
    let shutdown = app.shutdown.clone();
    let stream = async_stream(move |sender| async move {
        let _guard = guard;
        loop {
            let snapshot = state.borrow_and_update().clone();
            if let Some((progress, total, message)) = &snapshot.progress {
                let data = json!({ "progress": progress, "total": total, "message": message });
                if sender
                    .send(Event::default().event("progress").data(data.to_string()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if let Some(outcome) = snapshot.outcome {
                let event = match outcome {
                    crate::calls::Outcome::Result(result) => Event::default()
                        .event("result")
                        // SSE data may not hold a carriage return; in
                        // HTML the character reference means the same.
                        .data(
                            crate::calls::render_result(&id, &result)
                                .into_string()
                                .replace('\r', "&#13;"),
                        ),
                    crate::calls::Outcome::Failed(text) => {
                        Event::default().event("failure").data(one_line(&text))
                    }
                    crate::calls::Outcome::Cancelled => {
                        Event::default().event("failure").data("cancelled")
                    }
                };
                let _ = sender.send(event).await;
                return;
            }
            tokio::select! {
                changed = state.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// SSE data is line-based: keep a text on one line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A stream fed by a task (ends when the task does or the client leaves).
fn async_stream<F, Fut>(
    body: F,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(sender));
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    })
}

/// `POST /api/calls/<id>/cancel`.
pub async fn cancel_call(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if app.calls.cancel(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        plain(StatusCode::NOT_FOUND, "no such call")
    }
}

/// `GET /api/calls/<id>/image/<n>`: an image of a result.
pub async fn call_image(
    State(app): State<Arc<App>>,
    Path((id, index)): Path<(String, usize)>,
) -> Response {
    match app.calls.image(&id, index) {
        Some((mime, bytes)) => ([(header::CONTENT_TYPE, mime)], bytes).into_response(),
        None => plain(StatusCode::NOT_FOUND, "no such image"),
    }
}

/// `POST /api/services/<name>/<action>`.
pub async fn control_service(
    State(app): State<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let action: services::Action = match action.parse() {
        Ok(action) => action,
        Err(error) => return plain(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let manager = match app.system.manager().await {
        Ok(manager) => manager,
        Err(error) => return plain(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    };
    tracing::info!(service = %proto::text::escaped(&name), action = action.as_str(), "service control from the console");
    match manager.control(&name, action).await {
        Ok(()) => axum::Json(json!({ "ok": true })).into_response(),
        Err(error) => {
            let status = match &error {
                services::Error::NotOurs { .. } | services::Error::Denied { .. } => {
                    StatusCode::FORBIDDEN
                }
                services::Error::NoSuchService { .. } => StatusCode::NOT_FOUND,
                services::Error::BadFilter { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            plain(status, &error.to_string())
        }
    }
}

/// The log filters as the page's form sends them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    service: String,
    #[serde(default)]
    priority: String,
    /// Minutes back.
    #[serde(default)]
    since: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    before: String,
}

/// The choices of the "since" filter, in minutes.
const SINCE_CHOICES: &[(&str, &str)] = &[
    ("", "any time"),
    ("5", "the last 5 minutes"),
    ("60", "the last hour"),
    ("1440", "the last day"),
    ("10080", "the last week"),
];

const PRIORITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl LogQuery {
    fn filter(&self) -> Result<services::LogFilter, String> {
        let mut filter = services::LogFilter::default();
        if !self.service.is_empty() {
            filter.services = vec![self.service.clone()];
        }
        if !self.priority.is_empty() {
            filter.max_priority = Some(
                self.priority
                    .parse::<u8>()
                    .ok()
                    .filter(|priority| *priority <= 7)
                    .ok_or("priority must be 0 to 7")?,
            );
        }
        if !self.since.is_empty() {
            let minutes: u64 = self.since.parse().map_err(|_| "since must be minutes")?;
            filter.since = SystemTime::now().checked_sub(Duration::from_secs(minutes * 60));
        }
        if !self.text.is_empty() {
            filter.text = Some(self.text.clone());
        }
        Ok(filter)
    }

    /// The query string of these filters (for the older link and the stream).
    fn encoded(&self, before: Option<&str>) -> String {
        let mut pairs = vec![
            ("service", self.service.as_str()),
            ("priority", self.priority.as_str()),
            ("since", self.since.as_str()),
            ("text", self.text.as_str()),
        ];
        if let Some(before) = before {
            pairs.push(("before", before));
        }
        pairs
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| format!("{key}={}", percent(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Shell quoting for the equivalent command.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&byte))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/logs`: filtered entries, newest first, paged back by cursor.
pub async fn logs(
    State(app): State<Arc<App>>,
    session: Option<Extension<Session>>,
    Query(query): Query<LogQuery>,
) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    let manager = app
        .system
        .manager()
        .await
        .map_err(|error| error.to_string());
    let filter = query.filter();
    // The service names (for the filter's choices) and the page of
    // entries are asked for at the same time.
    let names = async {
        match &manager {
            Ok(manager) => manager
                .list()
                .await
                .map(|list| list.into_iter().map(|service| service.name).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    };
    let entries = async {
        match (&manager, &filter) {
            (Err(error), _) => (Err(error.clone()), None),
            (_, Err(error)) => (Err((*error).to_owned()), None),
            (Ok(manager), Ok(filter)) => {
                let before = (!query.before.is_empty()).then_some(query.before.as_str());
                (
                    manager
                        .logs(filter, before, LOG_PAGE)
                        .await
                        .map_err(|error| error.to_string()),
                    Some(shell_words(&manager.equivalent_command(filter))),
                )
            }
        }
    };
    let (names, (page, command)): (Vec<String>, _) = tokio::join!(names, entries);
    let body = html! {
        form #log-filters.filters method="get" action="/logs" {
            div.field {
                label for="log-service" { "Service" }
                select #log-service name="service" {
                    option value="" { "all" }
                    @for name in &names { option value=(name) selected[*name == query.service] { (name) } }
                }
            }
            div.field {
                label for="log-priority" { "Priority at least" }
                select #log-priority name="priority" {
                    option value="" { "any" }
                    @for (number, name) in PRIORITIES.iter().enumerate() {
                        option value=(number) selected[query.priority == number.to_string()] { (number) " " (name) }
                    }
                }
            }
            div.field {
                label for="log-since" { "Since" }
                select #log-since name="since" {
                    @for (value, name) in SINCE_CHOICES { option value=(value) selected[query.since == *value] { (name) } }
                }
            }
            div.field {
                label for="log-text" { "Text" }
                input #log-text type="search" name="text" value=(query.text) maxlength="200";
            }
            div.buttons {
                button type="submit" { "Filter" }
                button #tail type="button" data-query=(query.encoded(None)) aria-pressed="false" { "Follow live" }
            }
        }
        @if let Some(command) = &command {
            p { "The same in a terminal:" }
            pre #log-command { (command) }
        }
        @match &page {
            Err(error) => (problem(error)),
            Ok(page) => {
                div.scroll { table #log-table {
                    thead { tr { th { "Time" } th { "Service" } th { "Priority" } th { "Message" } } }
                    tbody #log-rows {
                        @for entry in &page.entries {
                            tr class=(format!("priority-{}", entry.priority)) {
                                td { (time_text(Some(entry.time))) }
                                td { (entry.service) }
                                td { (PRIORITIES.get(usize::from(entry.priority)).copied().unwrap_or("?")) }
                                td.message { (entry.message) }
                            }
                        }
                    }
                } }
                @if page.entries.is_empty() { p #log-empty { "No entry matches." } }
                @if let Some(older) = &page.older {
                    p { a #log-older href=(format!("/logs?{}", query.encoded(Some(older)))) { "Older entries" } }
                }
            }
        }
    };
    layout(&app, "Logs", "/logs", &session, body)
}

/// `GET /api/logs/stream?<filters>`: new entries as `entry` events (JSON).
pub async fn log_stream(State(app): State<Arc<App>>, Query(query): Query<LogQuery>) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(error) => return plain(StatusCode::BAD_REQUEST, &error),
    };
    let manager = match app.system.manager().await {
        Ok(manager) => manager,
        Err(error) => return plain(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    };
    let mut entries = match manager.follow(&filter).await {
        Ok(entries) => entries,
        Err(error) => return plain(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let guard = app.activity.stream();
    let shutdown = app.shutdown.clone();
    let stream = async_stream(move |sender| async move {
        let _guard = guard;
        loop {
            let entry = tokio::select! {
                entry = entries.recv() => entry,
                () = shutdown.cancelled() => None,
            };
            let Some(entry) = entry else { return };
            let data = json!({
                "time": time_text(Some(entry.time)),
                "service": entry.service,
                "priority": entry.priority,
                "priority_name": PRIORITIES.get(usize::from(entry.priority)).copied().unwrap_or("?"),
                "message": proto::text::bounded(&entry.message, 8192),
            });
            if sender
                .send(Event::default().event("entry").data(data.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Sse::new(stream.boxed())
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `/licence`: the machine's licence and the console's own standing.
pub async fn licence(State(app): State<Arc<App>>, session: Option<Extension<Session>>) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    let (own, all) = tokio::join!(
        app.gateway.call("mcp.licence.check", None, None),
        licence_report(&app)
    );
    let body = html! {
        section aria-labelledby="own-h" {
            h2 #own-h { "This machine" }
            @match &own {
                Err(error) => (problem(&error.to_string())),
                Ok(own) => {
                    @let fields: BTreeMap<&str, &str> = [
                        ("tier", "Console's tier"), ("machine_tier", "Machine tier"), ("standing", "Standing"),
                        ("licensee", "Licensee"), ("issued", "Issued"), ("expires", "Expires"), ("reason", "Reason"),
                    ].into_iter().collect();
                    dl #licence {
                        @for (key, name) in &fields {
                            @if let Some(value) = own.get(*key).filter(|value| !value.is_null()) {
                                dt { (name) }
                                dd { @match value { Value::String(text) => (text), other => (other.to_string()) } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="usage-h" {
            h2 #usage-h { "Per-client usage" }
            (clients_table(&all))
        }
    };
    layout(&app, "Licence", "/licence", &session, body)
}

/// A page for one service behind the gateway: what its listing methods
/// return, and its actions as tool forms (which show progress and can be
/// cancelled). Absent from the navigation while the service's tools are.
#[derive(Debug)]
pub struct ServicePage {
    pub path: &'static str,
    pub title: &'static str,
    /// Methods called with no params, each shown under its heading.
    pub views: &'static [(&'static str, &'static str)],
    /// Tools that act; the first one decides whether the page is shown.
    pub actions: &'static [(&'static str, &'static str)],
}

pub const SERVICE_PAGES: &[ServicePage] = &[
    ServicePage {
        path: "/workflows",
        title: "Workflows",
        views: &[
            ("mcp.agent.listWorkflows", "Workflows"),
            ("mcp.agent.listExecutions", "Executions"),
        ],
        actions: &[
            ("agent_runWorkflow", "Run a workflow"),
            ("agent_getWorkflowStatus", "A run's steps"),
            ("agent_getWorkflowLogs", "A run's logs"),
            ("agent_approve", "Approve a paused run"),
            ("agent_stopWorkflow", "Stop a run"),
            ("agent_resumeWorkflow", "Resume a run"),
        ],
    },
    ServicePage {
        path: "/sync",
        title: "Sync jobs",
        views: &[
            ("mcp.sync.listNamedJobs", "Named jobs"),
            ("mcp.sync.listJobs", "History"),
        ],
        actions: &[
            ("sync_runJob", "Run a job (with progress)"),
            ("sync_getJobStatus", "A job's status"),
            ("sync_getJobLog", "A job's log"),
            ("sync_stopJob", "Stop a job"),
        ],
    },
    ServicePage {
        path: "/semantic",
        title: "Semantic index",
        views: &[("mcp.fs.index_status", "Status")],
        actions: &[
            ("fs_embed", "Embed (with progress)"),
            ("fs_search", "Search"),
        ],
    },
];

/// A JSON value as a table when it is (or holds) a list of objects, else
/// as pretty JSON; all of it text.
fn value_view(value: &Value) -> Markup {
    let rows = match value {
        Value::Array(rows) => Some(rows),
        Value::Object(object) => object.values().find_map(|field| match field {
            Value::Array(rows) if rows.iter().all(Value::is_object) && !rows.is_empty() => {
                Some(rows)
            }
            _ => None,
        }),
        _ => None,
    };
    let Some(rows) = rows.filter(|rows| rows.iter().all(Value::is_object) && !rows.is_empty())
    else {
        return html! { pre.json { (serde_json::to_string_pretty(value).unwrap_or_default()) } };
    };
    let mut columns: Vec<&str> = Vec::new();
    for row in rows.iter().take(50) {
        for key in row.as_object().into_iter().flat_map(|object| object.keys()) {
            if columns.len() < 8 && !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    html! {
        div.scroll { table {
            thead { tr { @for column in &columns { th { (column) } } } }
            tbody {
                @for row in rows.iter().take(500) {
                    tr {
                        @for column in &columns {
                            td { @match row.get(*column) {
                                None | Some(Value::Null) => "—",
                                Some(Value::String(text)) => (proto::text::bounded(text, 500)),
                                Some(other) => code { (proto::text::bounded(&other.to_string(), 500)) },
                            } }
                        }
                    }
                }
            }
        } }
        @if rows.len() > 500 { p.hint { (rows.len() - 500) " more not shown." } }
    }
}

/// `/workflows`, `/sync`, `/semantic`.
pub async fn service_page(
    State(app): State<Arc<App>>,
    session: Option<Extension<Session>>,
    uri: axum::http::Uri,
) -> Response {
    let Some(Extension(session)) = session else {
        return sign_in();
    };
    let Some(service) = SERVICE_PAGES.iter().find(|page| page.path == uri.path()) else {
        return plain(StatusCode::NOT_FOUND, "no such page");
    };
    let tools = app.gateway.tools().await;
    let installed = tools
        .as_ref()
        .map(|tools| tools.iter().any(|tool| tool.name == service.actions[0].0))
        .unwrap_or(false);
    let mut views = Vec::new();
    if installed {
        for (method, heading) in service.views {
            views.push((heading, app.gateway.call(method, None, None).await));
        }
    }
    let body = html! {
        @match &tools {
            Err(error) => (problem(&error.to_string())),
            Ok(_) if !installed => p { "This service is not installed or not offered to the console." },
            Ok(tools) => {
                nav.actions aria-label="Actions" {
                    ul.cards {
                        @for (tool, label) in service.actions {
                            @if tools.iter().any(|known| known.name == *tool) {
                                li { a href=(format!("/tools/{tool}")) { (label) } " " code { (tool) } }
                            }
                        }
                    }
                }
                @for (heading, view) in &views {
                    section {
                        h2 { (heading) }
                        @match view {
                            Ok(value) => (value_view(value)),
                            Err(error) => (problem(&error.to_string())),
                        }
                    }
                }
            }
        }
    };
    layout(&app, service.title, service.path, &session, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(service: &str, text: &str) -> LogQuery {
        LogQuery {
            service: service.to_owned(),
            text: text.to_owned(),
            ..LogQuery::default()
        }
    }

    /// A filter that tries journal matches through the form is refused by
    /// the services crate before anything runs, and the text filter stays
    /// a plain substring in the equivalent command (one argv word).
    #[test]
    fn journal_injection_through_the_filters_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let manager = services::Manager::up(dir.path().join("no-up.sock"));
        for service in [
            "_SYSTEMD_UNIT=sshd.service",
            "fs _SYSTEMD_UNIT=sshd.service",
            "fs\n_SYSTEMD_UNIT=sshd.service",
            "--unit=sshd",
            "+",
        ] {
            let filter = query(service, "")
                .filter()
                .expect("the form's own checks pass");
            let refused = runtime
                .block_on(manager.logs(&filter, None, 10))
                .expect_err(service);
            assert_eq!(refused.kind(), "bad_filter", "{service}: {refused}");
        }
        let filter = query("", "_SYSTEMD_UNIT=sshd.service + MESSAGE=x")
            .filter()
            .expect("text filter");
        let argv = services::Manager::up(dir.path().join("no-up.sock")).equivalent_command(&filter);
        assert!(
            !argv.iter().any(|word| word.starts_with("_SYSTEMD_UNIT")),
            "{argv:?}"
        );
        assert!(
            query("", "")
                .encoded(Some("a&b=c"))
                .ends_with("before=a%26b%3Dc")
        );
    }

    #[test]
    fn the_equivalent_command_is_quoted_for_a_shell() {
        let words = ["journalctl", "--grep", "it's <b>"].map(str::to_owned);
        assert_eq!(shell_words(&words), r"journalctl --grep 'it'\''s <b>'");
    }
}
