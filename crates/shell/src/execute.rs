//! The second stage: a [`Command`] runs against the gateway. The shell's
//! own state (the current directory, the history) lives here; output is
//! collected into a string that the caller prints, errors become one
//! [`ShellError`] line.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::command::{BUILTINS, Command, End, MailCommand, Params, SyncCommand, builtin};
use crate::gateway::{Catalog, Failure, Gateway};
use crate::path::resolve;
use crate::render;

/// JSON-RPC's "method not found".
const METHOD_NOT_FOUND: i32 = -32601;

/// How a command failed; each kind has its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The command ran and failed (a missing file, a server's error): 1.
    Failed,
    /// What was typed is not a command: 2.
    Usage,
    /// The gateway cannot be reached: 69 (EX_UNAVAILABLE).
    Unavailable,
    /// The gateway (or its socket) was reached but refused us, or was not
    /// trusted: a missing or wrong token, a socket served by someone else:
    /// 77 (EX_NOPERM).
    Refused,
}

impl ErrorKind {
    pub(crate) fn exit_status(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Unavailable => 69,
            ErrorKind::Refused => 77,
        }
    }
}

/// One friendly line, and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShellError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    /// The message says on its own what failed ("cannot connect …",
    /// "unknown command: …", or it already names its command): no command
    /// name goes in front of it.
    pub(crate) framed: bool,
}

impl ShellError {
    pub(crate) fn usage(message: impl Into<String>) -> ShellError {
        ShellError {
            kind: ErrorKind::Usage,
            message: message.into(),
            framed: false,
        }
    }

    /// A message that stands alone (see [`ShellError::framed`]).
    fn framed(self) -> ShellError {
        ShellError {
            framed: true,
            ..self
        }
    }

    fn failed(message: impl Into<String>) -> ShellError {
        ShellError {
            kind: ErrorKind::Failed,
            message: message.into(),
            framed: false,
        }
    }

    /// A failure whose messages the command printed already (`cat` with
    /// several missing files): it only sets the exit status.
    fn reported(kind: ErrorKind) -> ShellError {
        ShellError {
            kind,
            message: String::new(),
            framed: true,
        }
    }

    /// Prints the message on standard error, unless it was printed already.
    pub(crate) fn print(&self) {
        if !self.message.is_empty() {
            eprintln!("{}", self.message);
        }
    }

    /// The error on one line, prefixed with the command's name unless it
    /// stands alone.
    fn of_command(self, name: &str) -> ShellError {
        if self.message.is_empty() {
            return self;
        }
        let message = one_line(&self.message);
        ShellError {
            kind: self.kind,
            message: if self.framed {
                message
            } else {
                format!("{name}: {message}")
            },
            framed: true,
        }
    }
}

/// What the shell does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Exit(u8),
}

/// The shell's state between commands.
#[derive(Debug)]
pub(crate) struct Shell {
    pub(crate) gateway: Arc<Gateway>,
    /// Absolute and normalised; see [`crate::path`].
    pub(crate) cwd: String,
    /// Print raw JSON results, one per line, instead of tables and text.
    pub(crate) json: bool,
    /// Whether `write PATH` without text may read standard input.
    pub(crate) stdin_content: bool,
    /// The lines run so far (the interactive shell starts it from the
    /// history file).
    pub(crate) history: Vec<String>,
    /// Show the progress of long calls (when standard error is a terminal).
    pub(crate) show_progress: bool,
}

impl Shell {
    pub(crate) fn new(gateway: Arc<Gateway>, json: bool, stdin_content: bool) -> Shell {
        Shell {
            gateway,
            cwd: "/".to_owned(),
            json,
            stdin_content,
            history: Vec::new(),
            show_progress: false,
        }
    }

    /// Runs one command, appending what it prints to `out`.
    pub(crate) async fn run(
        &mut self,
        command: Command,
        out: &mut String,
    ) -> Result<Flow, ShellError> {
        let name = command_name(&command).to_owned();
        self.execute(command, out)
            .await
            .map_err(|error| error.of_command(&name))
    }

    async fn execute(&mut self, command: Command, out: &mut String) -> Result<Flow, ShellError> {
        match command {
            Command::List { long, path } => {
                let path = self.path(path.as_deref().unwrap_or("."));
                let listing = match self.list(&path).await {
                    Ok(listing) => listing,
                    // `ls FILE` shows the file, as ls does.
                    Err(error) => match self
                        .gateway
                        .call("mcp.fs.stat", Some(json!({ "path": path })))
                        .await
                    {
                        Ok(stat)
                            if stat.get("type").and_then(Value::as_str) != Some("directory") =>
                        {
                            json!({ "path": path, "entries": [stat] })
                        }
                        _ => return Err(error),
                    },
                };
                if self.json {
                    json_line(out, &listing);
                } else {
                    render::listing(out, &listing, long);
                }
            }
            Command::ChangeDir { path } => {
                let path = self.path(path.as_deref().unwrap_or("/"));
                if path != "/" {
                    let stat = self
                        .fs("mcp.fs.stat", json!({ "path": path }), &path)
                        .await?;
                    if stat.get("type").and_then(Value::as_str) != Some("directory") {
                        return Err(ShellError::failed(format!("not a directory: {path}")));
                    }
                }
                self.cwd = path;
            }
            Command::PrintDir => {
                if self.json {
                    json_line(out, &json!(self.cwd));
                } else {
                    let _ = writeln!(out, "{}", self.cwd);
                }
            }
            Command::Cat { paths } => {
                // As cat: every file that can be read is printed, each one
                // that cannot is named on standard error in its turn, and
                // the command fails at the end.
                let mut failed = None;
                for path in paths {
                    let path = self.path(&path);
                    let params = json!({ "path": path, "encoding": "auto" });
                    match self.read(out, &path, params).await {
                        Ok(()) => {}
                        // Without a gateway the other files cannot be read either.
                        Err(error) if error.kind == ErrorKind::Unavailable => return Err(error),
                        Err(error) => {
                            crate::emit(&std::mem::take(out));
                            let error = error.of_command("cat");
                            error.print();
                            failed = Some(error.kind);
                        }
                    }
                }
                if let Some(kind) = failed {
                    return Err(ShellError::reported(kind));
                }
            }
            Command::Lines { end, count, path } => {
                let path = self.path(&path);
                let key = match end {
                    End::Head => "head",
                    End::Tail => "tail",
                };
                self.read(
                    out,
                    &path,
                    json!({ "path": path, "encoding": "auto", key: count }),
                )
                .await?;
            }
            Command::Write { path, text } => {
                let path = self.path(&path);
                let content = match text {
                    Some(text) => text,
                    None if self.stdin_content => read_stdin().await?,
                    None => {
                        return Err(ShellError::usage(
                            "give the text after the path, or pipe it in: echo text | luca-shell -c 'write PATH'",
                        ));
                    }
                };
                let result = self
                    .fs(
                        "mcp.fs.write",
                        json!({ "path": path, "content": content }),
                        &path,
                    )
                    .await?;
                self.quiet(out, &result);
            }
            Command::MakeDir { parents, paths } => {
                for path in paths {
                    let path = self.path(&path);
                    let result = self
                        .fs(
                            "mcp.fs.mkdir",
                            json!({ "path": path, "parents": parents }),
                            &path,
                        )
                        .await?;
                    self.quiet(out, &result);
                }
            }
            Command::Remove { recursive, paths } => {
                for path in paths {
                    let path = self.path(&path);
                    let result = self
                        .fs(
                            "mcp.fs.delete",
                            json!({ "path": path, "recursive": recursive }),
                            &path,
                        )
                        .await?;
                    self.quiet(out, &result);
                }
            }
            Command::Move {
                overwrite,
                from,
                to,
            } => {
                let (from, to) = (self.path(&from), self.path(&to));
                let params = json!({ "from": from, "to": to, "overwrite": overwrite });
                let result = self.fs("mcp.fs.move", params, &from).await?;
                self.quiet(out, &result);
            }
            Command::Copy {
                recursive,
                overwrite,
                from,
                to,
            } => {
                let (from, to) = (self.path(&from), self.path(&to));
                let params = json!({
                    "from": from,
                    "to": to,
                    "recursive": recursive,
                    "overwrite": overwrite,
                });
                let result = self.fs("mcp.fs.copy", params, &from).await?;
                self.quiet(out, &result);
            }
            Command::Grep {
                pattern,
                path,
                case_insensitive,
                fixed_strings,
            } => {
                let path = self.path(path.as_deref().unwrap_or("."));
                let params = json!({
                    "pattern": pattern,
                    "path": path,
                    "case_insensitive": case_insensitive,
                    "fixed_strings": fixed_strings,
                });
                let result = self.fs("mcp.fs.grep", params, &path).await?;
                if self.json {
                    json_line(out, &result);
                } else {
                    render::grep(out, &result);
                }
            }
            Command::Edit { path } => {
                let path = self.path(&path);
                self.edit(out, &path).await?;
            }
            Command::Search { query } => {
                let params = json!({ "query": query, "scope": self.cwd });
                let result = self
                    .optional(
                        "mcp.fs.search",
                        params,
                        "semantic search needs the fs server's index",
                    )
                    .await?;
                if self.json {
                    json_line(out, &result);
                } else {
                    render::search(out, &result);
                }
            }
            Command::Llm { prompt } => self.llm(out, &prompt).await?,
            Command::Sync(command) => self.sync(out, command).await?,
            Command::Mail(mail) => self.mail(out, mail).await?,
            Command::Licence => {
                let check = self
                    .optional(
                        "mcp.licence.check",
                        json!({}),
                        "the licence needs the gateway's mcp.licence.check",
                    )
                    .await?;
                if self.json {
                    json_line(out, &check);
                } else {
                    render::licence(out, &check);
                }
            }
            Command::Tools => {
                let tools = self.gateway.list_tools().await.map_err(from_failure)?;
                if self.json {
                    json_line(out, &json!({ "tools": tools }));
                } else {
                    render::tools(out, &tools);
                }
            }
            Command::Call {
                name,
                params,
                explicit,
            } => self.call(out, &name, params, explicit).await?,
            Command::Workflow(workflow) => self.workflow(out, workflow).await?,
            Command::Help { topic } => self.help(out, topic.as_deref()).await?,
            Command::History => {
                for (number, line) in self.history.iter().enumerate() {
                    let _ = writeln!(out, "{:>5}  {line}", number + 1);
                }
            }
            Command::Exit { status } => return Ok(Flow::Exit(status)),
        }
        Ok(Flow::Continue)
    }

    /// `mail …` on the mail service's methods. Message text is the
    /// senders': it is printed as it came, never run.
    async fn mail(&self, out: &mut String, mail: MailCommand) -> Result<(), ShellError> {
        let (method, params) = match &mail {
            MailCommand::Folders { account } => {
                ("mcp.mail.listFolders", json!({ "account": account }))
            }
            MailCommand::List {
                account,
                folder,
                limit,
            } => (
                "mcp.mail.listMessages",
                json!({ "account": account, "folder": folder, "limit": limit }),
            ),
            MailCommand::Read {
                account,
                folder,
                uid,
            } => (
                "mcp.mail.getMessage",
                json!({ "account": account, "folder": folder, "uid": uid }),
            ),
            MailCommand::Send {
                account,
                to,
                subject,
                body,
                confirmed: false,
            } => {
                let _ = writeln!(
                    out,
                    "From account: {account}\nTo: {to}\nSubject: {subject}\n\n{body}"
                );
                let _ = writeln!(
                    out,
                    "(not sent: run the same command as `mail send -y …` to send it)"
                );
                return Ok(());
            }
            MailCommand::Send {
                account,
                to,
                subject,
                body,
                confirmed: true,
            } => (
                "mcp.mail.send",
                json!({ "account": account, "to": to, "subject": subject, "body": body }),
            ),
        };
        let result =
            self.gateway
                .call(method, Some(params))
                .await
                .map_err(|failure| match failure {
                    Failure::Server(error) if error.code == METHOD_NOT_FOUND => ShellError::failed(
                        "the mail server is not available on this gateway".to_owned(),
                    ),
                    Failure::Server(error) => ShellError::failed(in_shell_words(&error)),
                    other => from_failure(other),
                })?;
        if self.json {
            json_line(out, &result);
            return Ok(());
        }
        let text = |value: &Value, key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        match mail {
            MailCommand::Folders { .. } => {
                for folder in result["folders"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "{:<24} {:>7} messages {:>6} unseen {}",
                        text(folder, "name"),
                        folder["messages"]
                            .as_u64()
                            .map_or("-".to_owned(), |count| count.to_string()),
                        folder["unseen"]
                            .as_u64()
                            .map_or("-".to_owned(), |count| count.to_string()),
                        text(folder, "special_use")
                    );
                }
            }
            MailCommand::List { .. } => {
                for message in result["messages"].as_array().into_iter().flatten() {
                    let seen = if message["seen"].as_bool() == Some(true) {
                        ' '
                    } else {
                        '*'
                    };
                    let _ = writeln!(
                        out,
                        "{seen}{:>7}  {:<25.25}  {:<30.30}  {}",
                        message["uid"].as_u64().unwrap_or(0),
                        text(message, "date"),
                        text(message, "from"),
                        text(message, "subject")
                    );
                }
                if let Some(total) = result["total"].as_u64() {
                    let _ = writeln!(
                        out,
                        "({} of {total})",
                        result["messages"].as_array().map_or(0, Vec::len)
                    );
                }
            }
            MailCommand::Read { .. } => {
                let addresses = |key: &str| {
                    result[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|mailbox| text(mailbox, "address"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    out,
                    "From: {}\nTo: {}\nDate: {}\nSubject: {}",
                    addresses("from"),
                    addresses("to"),
                    text(&result, "date"),
                    text(&result, "subject")
                );
                for attachment in result["attachments"].as_array().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "Attachment {}: {} ({}, {} bytes)",
                        text(attachment, "part_id"),
                        text(attachment, "name"),
                        text(attachment, "content_type"),
                        attachment["size"].as_u64().unwrap_or(0)
                    );
                }
                let _ = writeln!(out, "\n{}", text(&result["body"], "text"));
                if result["body"]["has_more"].as_bool() == Some(true) {
                    let _ = writeln!(
                        out,
                        "(the body goes on: call mcp.mail.getMessage with body_offset)"
                    );
                }
            }
            MailCommand::Send { .. } => {
                let _ = writeln!(out, "sent: {}", text(&result, "message_id"));
            }
        }
        Ok(())
    }

    fn path(&self, typed: &str) -> String {
        resolve(&self.cwd, typed)
    }

    /// A call to the file service on behalf of a built-in command: its
    /// "not found" names the path, and a gateway without the service says
    /// so.
    async fn fs(&self, method: &str, params: Value, path: &str) -> Result<Value, ShellError> {
        self.gateway
            .call(method, Some(params))
            .await
            .map_err(|failure| match failure {
                // A missing parent has a hint to create it; the path
                // itself missing has none worth more than these words.
                Failure::Server(error)
                    if kind_of(&error) == Some("not_found")
                        && proto::ErrorHint::of(&error).is_none_or(|hint| hint.method != "mcp.fs.mkdir") =>
                {
                    ShellError::failed(format!("no such file or directory: {path}"))
                }
                Failure::Server(error) if error.code == METHOD_NOT_FOUND => ShellError::failed(
                    format!("the file server is not available on this gateway ({method} is unknown to it)"),
                ),
                Failure::Server(error) => ShellError::failed(in_shell_words(&error)),
                other => from_failure(other),
            })
    }

    /// `edit PATH`: the file's text in a private temporary file, the
    /// editor on it, and the result written back (atomically, by the fs
    /// server) only if it changed. A file that does not exist yet starts empty.
    async fn edit(&self, out: &mut String, path: &str) -> Result<(), ShellError> {
        let original = match self
            .gateway
            .call(
                "mcp.fs.read",
                Some(json!({ "path": path, "encoding": "text" })),
            )
            .await
        {
            Ok(result) => result
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Err(Failure::Server(error)) if kind_of(&error) == Some("not_found") => String::new(),
            Err(Failure::Server(error)) => {
                return Err(ShellError::failed(in_shell_words(&error)));
            }
            Err(other) => return Err(from_failure(other)),
        };
        let name = path
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .unwrap_or("file");
        let original_for_editor = original.clone();
        let name = name.to_owned();
        let edited = tokio::task::spawn_blocking(move || run_editor(&name, &original_for_editor))
            .await
            .map_err(|error| ShellError::failed(format!("the editor could not run: {error}")))??;
        if edited == original {
            let _ = writeln!(out, "{path}: unchanged");
            return Ok(());
        }
        let result = self
            .fs(
                "mcp.fs.write",
                json!({ "path": path, "content": edited }),
                path,
            )
            .await?;
        self.quiet(out, &result);
        Ok(())
    }

    /// Calls a method the gateway may not offer yet; if it does not, says
    /// what is missing in one line.
    async fn optional(
        &self,
        method: &str,
        params: Value,
        missing: &str,
    ) -> Result<Value, ShellError> {
        self.gateway
            .call(method, Some(params))
            .await
            .map_err(|failure| optional_failure(failure, method, missing))
    }

    /// A directory listing, every page of it.
    async fn list(&self, path: &str) -> Result<Value, ShellError> {
        let mut listing = self
            .fs("mcp.fs.list", json!({ "path": path }), path)
            .await?;
        while let Some(cursor) = listing
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            let page = self
                .fs(
                    "mcp.fs.list",
                    json!({ "path": path, "cursor": cursor }),
                    path,
                )
                .await?;
            let more = page.get("entries").cloned().unwrap_or(json!([]));
            if let (Some(entries), Value::Array(more)) = (
                listing.get_mut("entries").and_then(Value::as_array_mut),
                more,
            ) {
                entries.extend(more);
            }
            match page.get("next_cursor") {
                Some(next) if next.as_str() != Some(&cursor) => {
                    listing["next_cursor"] = next.clone();
                }
                _ => {
                    if let Value::Object(object) = &mut listing {
                        object.remove("next_cursor");
                    }
                }
            }
        }
        Ok(listing)
    }

    async fn read(&self, out: &mut String, path: &str, params: Value) -> Result<(), ShellError> {
        let result = self.fs("mcp.fs.read", params, path).await?;
        if self.json {
            json_line(out, &result);
            return Ok(());
        }
        if result.get("encoding").and_then(Value::as_str) != Some("text") {
            let size = result.get("size").and_then(Value::as_u64).unwrap_or(0);
            return Err(ShellError::failed(format!(
                "{path} is not text ({size} bytes); `call mcp.fs.read path={path} encoding=base64` gives its bytes"
            )));
        }
        let content = result.get("content").and_then(Value::as_str).unwrap_or("");
        out.push_str(content);
        if !content.is_empty() && !content.ends_with('\n') {
            out.push('\n');
        }
        Ok(())
    }

    /// Commands that print nothing on success print their result in JSON mode.
    fn quiet(&self, out: &mut String, result: &Value) {
        if self.json {
            json_line(out, result);
        }
    }

    async fn call(
        &self,
        out: &mut String,
        name: &str,
        params: Params,
        explicit: bool,
    ) -> Result<(), ShellError> {
        // Method names have dots (mcp.fs.read) or slashes (tools/list);
        // tool names have neither.
        let file_service = name.starts_with("mcp.fs.") || name.starts_with("fs_");
        if name.contains(['.', '/']) {
            let mut params = match params {
                Params::Json(value) => Some(value),
                // Plain values go as a positional array, which the server
                // maps, except to the file service, whose paths the shell
                // resolves by name.
                Params::Words { positional, named } if named.is_empty() && !file_service => {
                    (!positional.is_empty()).then_some(Value::Array(positional))
                }
                Params::Words { positional, named } => {
                    let catalog = self.gateway.catalog().await.map_err(from_failure)?;
                    let order = catalog
                        .method(name)
                        .map(|method| method.positional.clone())
                        .unwrap_or_default();
                    Some(Value::Object(name_positional(
                        name, &order, positional, named,
                    )?))
                }
            };
            if file_service && let Some(params) = &mut params {
                self.resolve_paths(params);
            }
            let result = self.call_showing_progress(name, params).await?;
            self.print_value(out, &result);
            return Ok(());
        }
        let mut catalog = self.gateway.catalog().await.map_err(from_failure)?;
        if catalog.tool(name).is_none() {
            self.gateway.forget_catalog();
            catalog = self.gateway.catalog().await.map_err(from_failure)?;
        }
        if catalog.tool(name).is_none() {
            return Err(if explicit {
                ShellError::usage(format!(
                    "unknown method or tool: {name}; `tools` lists the tools"
                ))
            } else {
                ShellError::usage(format!(
                    "unknown command: {name}; type `help` for the commands"
                ))
                .framed()
            });
        }
        let mut arguments = tool_arguments(&catalog, name, params)?;
        if file_service {
            self.resolve_paths(&mut arguments);
        }
        let result = self
            .call_showing_progress(
                proto::mcp::method::TOOLS_CALL,
                Some(json!({ "name": name, "arguments": arguments })),
            )
            .await?;
        if self.json {
            json_line(out, &result);
        }
        let text = render::tool_text(&result);
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(ShellError::failed(text));
        }
        if !self.json {
            match result.get("structuredContent") {
                Some(structured) => self.print_value(out, structured),
                None => {
                    out.push_str(&text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
        Ok(())
    }

    /// In a call to the file service, relative paths (`path`, `from`,
    /// `to`, `paths`) are taken from the current directory, as in the
    /// built-in commands.
    fn resolve_paths(&self, params: &mut Value) {
        let Value::Object(params) = params else {
            return;
        };
        for (key, value) in params.iter_mut() {
            match (key.as_str(), value) {
                ("path" | "from" | "to", Value::String(path)) => *path = self.path(path),
                ("paths", Value::Array(paths)) => {
                    for path in paths {
                        if let Value::String(path) = path {
                            *path = self.path(path);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// `llm`: the model's answer, printed as it is generated (the gateway
    /// streams it as progress messages); `--json` prints the whole result.
    async fn llm(&self, out: &mut String, prompt: &str) -> Result<(), ShellError> {
        const MISSING: &str = "asking a model needs the gateway's llm proxy";
        let messages = json!([{ "role": "user", "content": prompt }]);
        if self.json {
            let params = json!({ "messages": messages });
            let result = self.optional("mcp.llm.chat", params, MISSING).await?;
            json_line(out, &result);
            return Ok(());
        }
        let params = json!({ "messages": messages, "stream": true });
        let (sender, mut pieces) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let call = self.optional_with_progress("mcp.llm.chat", params, MISSING, sender);
        let print = async {
            let mut shown = String::new();
            while let Some(update) = pieces.recv().await {
                if let Some(piece) = update.get("message").and_then(Value::as_str) {
                    crate::emit(piece);
                    shown.push_str(piece);
                }
            }
            shown
        };
        let (result, shown) = tokio::join!(call, print);
        let result = result.inspect_err(|_| {
            if !shown.is_empty() {
                println!();
            }
        })?;
        let content = result
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // What did not arrive piece by piece (a model that does not stream,
        // a piece lost on a full queue) is printed whole now.
        let rest = match content.strip_prefix(shown.as_str()) {
            Some(rest) => rest.to_owned(),
            None => format!("\n{content}"),
        };
        out.push_str(&rest);
        if !format!("{shown}{rest}").ends_with('\n') {
            out.push('\n');
        }
        if let Some(cut) = result.get("cut").and_then(Value::as_str) {
            let _ = writeln!(out, "({cut})");
        }
        // When a token quota applies, what remains of it.
        if let Ok(check) = self
            .gateway
            .call("mcp.licence.check", Some(json!({})))
            .await
        {
            render::remaining_tokens(out, &check);
        }
        Ok(())
    }

    /// `wf …`: the agent server's methods; `run` waits for the end and
    /// prints each step as it finishes (the run's progress notifications).
    async fn workflow(
        &self,
        out: &mut String,
        workflow: crate::command::Workflow,
    ) -> Result<(), ShellError> {
        use crate::command::Workflow;
        const MISSING: &str = "workflows need the agent server (llmbasedos-agent)";
        let (method, params) = match workflow {
            Workflow::List => ("mcp.agent.listWorkflows", json!({})),
            Workflow::Run { id, inputs } => {
                let params = json!({"id": id, "inputs": inputs, "wait": true});
                let (sender, mut updates) = tokio::sync::mpsc::unbounded_channel::<Value>();
                let call =
                    self.optional_with_progress("mcp.agent.runWorkflow", params, MISSING, sender);
                let json = self.json;
                let print = async move {
                    while let Some(update) = updates.recv().await {
                        if !json
                            && let Some(message) = update.get("message").and_then(Value::as_str)
                        {
                            crate::emit(&format!("{message}\n"));
                        }
                    }
                };
                let (result, ()) = tokio::join!(call, print);
                let result = result?;
                if self.json {
                    json_line(out, &result);
                } else {
                    out.push_str(&format!(
                        "execution {} {}\n",
                        result["execution_id"].as_str().unwrap_or("?"),
                        result["status"].as_str().unwrap_or("?")
                    ));
                    out.push_str(&format!("{:#}\n", result["outputs"]));
                }
                return Ok(());
            }
            Workflow::Status { execution } => (
                "mcp.agent.getWorkflowStatus",
                json!({"execution_id": execution}),
            ),
            Workflow::Logs { execution, step } => {
                let mut params = json!({"execution_id": execution});
                if let Some(step) = step {
                    params["step"] = json!(step);
                }
                ("mcp.agent.getWorkflowLogs", params)
            }
            Workflow::Stop { execution } => {
                ("mcp.agent.stopWorkflow", json!({"execution_id": execution}))
            }
            Workflow::Approve {
                execution,
                step,
                approved,
            } => (
                "mcp.agent.approve",
                json!({"execution_id": execution, "step": step, "approved": approved}),
            ),
        };
        let result = self.optional(method, params, MISSING).await?;
        if self.json {
            json_line(out, &result);
            return Ok(());
        }
        render_workflow(out, method, &result);
        Ok(())
    }

    /// [`Shell::optional`] with the call's progress sent to `progress`.
    async fn optional_with_progress(
        &self,
        method: &str,
        params: Value,
        missing: &str,
        progress: tokio::sync::mpsc::UnboundedSender<Value>,
    ) -> Result<Value, ShellError> {
        self.gateway
            .call_with_progress(method, Some(params), Some(progress))
            .await
            .map_err(|failure| optional_failure(failure, method, missing))
    }

    /// A call that always asks for progress, for methods that then answer
    /// only at their end (`mcp.sync.runJob`): shown as
    /// [`Self::call_showing_progress`] shows it on a terminal, dropped
    /// elsewhere.
    async fn call_followed(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, ShellError> {
        if self.show_progress {
            return self.call_showing_progress(method, params).await;
        }
        // Updates sent to a closed channel are dropped by the client.
        let (sender, _) = tokio::sync::mpsc::unbounded_channel::<Value>();
        self.gateway
            .call_with_progress(method, params, Some(sender))
            .await
            .map_err(from_failure)
    }

    /// A call whose progress, if it reports any, is shown on the terminal
    /// (standard error) as it arrives, on one line that the answer clears.
    async fn call_showing_progress(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, ShellError> {
        if !self.show_progress {
            return self
                .gateway
                .call(method, params)
                .await
                .map_err(from_failure);
        }
        let (sender, mut updates) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let call = self
            .gateway
            .call_with_progress(method, params, Some(sender));
        let show = async {
            let mut shown = false;
            while let Some(update) = updates.recv().await {
                eprint!("\r\x1b[K{}", render::progress(&update));
                shown = true;
            }
            shown
        };
        let (outcome, shown) = tokio::join!(call, show);
        if shown {
            eprint!("\r\x1b[K");
        }
        outcome.map_err(from_failure)
    }

    /// `sync …`: the sync service's methods; `run` follows the job to its
    /// end (the request always carries a progress token, so the answer is
    /// the job's end, in a script too, and Ctrl-C, which cancels the
    /// request, stops the job), with a live progress line on a terminal.
    async fn sync(&self, out: &mut String, command: SyncCommand) -> Result<(), ShellError> {
        let missing = "the sync service is not available on this gateway";
        let (method, params) = match command {
            SyncCommand::Remotes => ("mcp.sync.listRemotes", json!({})),
            SyncCommand::Run {
                job,
                ends,
                mode,
                dry_run,
            } => {
                let mut params = json!({ "dry_run": dry_run });
                if let Some(job) = job {
                    params["job"] = json!(job);
                }
                if let Some((source, destination)) = ends {
                    params["source"] = json!(source);
                    params["destination"] = json!(destination);
                }
                if let Some(mode) = mode {
                    params["mode"] = json!(mode);
                }
                ("mcp.sync.runJob", params)
            }
            SyncCommand::Status { id } => ("mcp.sync.getJobStatus", json!({ "job_id": id })),
            SyncCommand::Stop { id } => ("mcp.sync.stopJob", json!({ "job_id": id })),
            SyncCommand::History { state } => {
                let mut params = json!({ "limit": 20 });
                if let Some(state) = state {
                    params["state"] = json!(state);
                }
                ("mcp.sync.listJobs", params)
            }
        };
        let result = if method == "mcp.sync.runJob" {
            self.call_followed(method, Some(params))
                .await
                .map_err(|error| error.of_command("sync"))?
        } else {
            self.optional(method, params, missing).await?
        };
        if self.json {
            json_line(out, &result);
            return Ok(());
        }
        match method {
            "mcp.sync.listRemotes" => render::sync_remotes(out, &result),
            "mcp.sync.listJobs" => render::sync_jobs(out, &result),
            _ => render::sync_job(out, &result),
        }
        Ok(())
    }

    fn print_value(&self, out: &mut String, value: &Value) {
        if self.json {
            json_line(out, value);
        } else {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        }
    }

    async fn help(&self, out: &mut String, topic: Option<&str>) -> Result<(), ShellError> {
        match topic {
            None => render::help(out, BUILTINS),
            Some(topic) => match builtin(topic) {
                Some(builtin) => {
                    let _ = writeln!(out, "{}\n  {}", builtin.usage, builtin.summary);
                }
                None => {
                    let catalog = self.gateway.catalog().await.map_err(from_failure)?;
                    let method = catalog
                        .method(topic)
                        .or_else(|| catalog.method_of_tool(topic));
                    let description =
                        method.map(|method| method.description.clone()).or_else(|| {
                            catalog
                                .tool(topic)
                                .and_then(|tool| tool.description.clone())
                        });
                    let Some(description) = description else {
                        return Err(ShellError::usage(format!(
                            "no command, method or tool is called {topic}; type `help` for the commands"
                        )));
                    };
                    let _ = writeln!(out, "{topic}\n  {description}");
                    let params =
                        catalog.param_names(method.map_or(topic, |method| method.name.as_str()));
                    if !params.is_empty() {
                        let _ = writeln!(out, "  params: {}", params.join(", "));
                    }
                }
            },
        }
        Ok(())
    }
}

/// A tool's arguments: named, plain values named by the method's
/// `positional`, or one JSON object.
fn tool_arguments(catalog: &Catalog, tool: &str, params: Params) -> Result<Value, ShellError> {
    match params {
        Params::Json(value @ Value::Object(_)) => Ok(value),
        Params::Json(_) => Err(ShellError::usage(format!(
            "a tool takes an object of arguments: {tool} key=value … or '{{\"key\": …}}'"
        ))),
        Params::Words { positional, named } => {
            let order = catalog
                .method_of_tool(tool)
                .map(|method| method.positional.clone())
                .unwrap_or_default();
            Ok(Value::Object(name_positional(
                tool, &order, positional, named,
            )?))
        }
    }
}

fn name_positional(
    name: &str,
    order: &[String],
    positional: Vec<Value>,
    mut named: Map<String, Value>,
) -> Result<Map<String, Value>, ShellError> {
    if positional.len() > order.len() {
        return Err(ShellError::usage(if order.is_empty() {
            format!("{name} takes its params as key=value")
        } else {
            format!(
                "{name} takes at most {} plain values ({}); give the rest as key=value",
                order.len(),
                order.join(", ")
            )
        }));
    }
    for (key, value) in order.iter().zip(positional) {
        named.entry(key.clone()).or_insert(value);
    }
    Ok(named)
}

/// The kind of a server's error (`error.data.kind`), which clients match
/// instead of its text.
fn kind_of(error: &proto::ErrorObject) -> Option<&str> {
    error.data.as_ref()?.get("kind")?.as_str()
}

/// A server's error in the shell's words: a hint that calls a file
/// service method becomes the shell command that calls it.
fn in_shell_words(error: &proto::ErrorObject) -> String {
    let Some(hint) = proto::ErrorHint::of(error) else {
        return error.message.clone();
    };
    let Some(command) = shell_command(&hint) else {
        return error.message.clone();
    };
    let plain = hint.plain(&error.message);
    format!("{plain}; {} with {command}", hint.action)
}

/// The built-in command that makes the hint's call, if there is one.
fn shell_command(hint: &proto::ErrorHint) -> Option<String> {
    let text = |key: &str| hint.arguments.get(key).and_then(Value::as_str);
    let flag = |key: &str, flag: &str| {
        if hint.arguments.get(key).and_then(Value::as_bool) == Some(true) {
            format!(" {flag}")
        } else {
            String::new()
        }
    };
    let quoted = |word: &str| {
        if !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+,=:@".contains(c))
        {
            word.to_owned()
        } else {
            format!("'{}'", word.replace('\'', "'\\''"))
        }
    };
    let path = text("path").map(quoted);
    Some(match hint.method.as_str() {
        "mcp.fs.mkdir" => format!("mkdir{} {}", flag("parents", "-p"), path?),
        "mcp.fs.delete" => format!("rm{} {}", flag("recursive", "-r"), path?),
        "mcp.fs.list" => path.map_or_else(|| "ls".to_owned(), |path| format!("ls {path}")),
        "mcp.fs.read" if hint.arguments.contains_key("length") => format!("head {}", path?),
        "mcp.fs.read" => format!("cat {}", path?),
        "mcp.fs.write" => format!("write {}", path?),
        "mcp.fs.copy" => format!(
            "cp{}{} {} {}",
            flag("recursive", "-r"),
            flag("overwrite", "-f"),
            quoted(text("from")?),
            quoted(text("to")?)
        ),
        "mcp.fs.move" => format!(
            "mv{} {} {}",
            flag("overwrite", "-f"),
            quoted(text("from")?),
            quoted(text("to")?)
        ),
        "mcp.fs.grep" => format!(
            "grep{} {}",
            flag("fixed_strings", "-F"),
            quoted(text("pattern")?)
        ),
        _ => return None,
    })
}

fn from_failure(failure: Failure) -> ShellError {
    match failure {
        // "cannot connect …" stands alone.
        Failure::Unavailable(message) => ShellError {
            kind: ErrorKind::Unavailable,
            message,
            framed: true,
        },
        Failure::Refused(message) => ShellError {
            kind: ErrorKind::Refused,
            message,
            framed: false,
        },
        Failure::Server(error) => ShellError::failed(error.message),
        Failure::Lost(message) => ShellError::failed(message),
    }
}

/// A message on one line: a server's multi-line message (a regex error
/// with its caret) is joined.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_line(out: &mut String, value: &Value) {
    let _ = writeln!(out, "{value}");
}

async fn read_stdin() -> Result<String, ShellError> {
    tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
        .await
        .map_err(|error| ShellError::failed(format!("cannot read standard input: {error}")))?
        .map_err(|error| ShellError::failed(format!("cannot read standard input: {error}")))
}

/// The name errors of a command are prefixed with.
fn command_name(command: &Command) -> &str {
    match command {
        Command::List { .. } => "ls",
        Command::ChangeDir { .. } => "cd",
        Command::PrintDir => "pwd",
        Command::Cat { .. } => "cat",
        Command::Lines { end: End::Head, .. } => "head",
        Command::Lines { end: End::Tail, .. } => "tail",
        Command::Write { .. } => "write",
        Command::MakeDir { .. } => "mkdir",
        Command::Remove { .. } => "rm",
        Command::Move { .. } => "mv",
        Command::Copy { .. } => "cp",
        Command::Grep { .. } => "grep",
        Command::Edit { .. } => "edit",
        Command::Search { .. } => "search",
        Command::Llm { .. } => "llm",
        Command::Sync(_) => "sync",
        Command::Mail(_) => "mail",
        Command::Tools => "tools",
        Command::Licence => "licence",
        Command::Call { name, .. } => name,
        Command::Workflow(_) => "wf",
        Command::Help { .. } => "help",
        Command::History => "history",
        Command::Exit { .. } => "exit",
    }
}

/// Runs `$VISUAL` or `$EDITOR` (default `vi`) on a private copy of `text`
/// (mode 0600, in its own temporary directory) and returns what it holds
/// after the editor exits successfully.
fn run_editor(name: &str, text: &str) -> Result<String, ShellError> {
    use std::os::unix::fs::PermissionsExt;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|editor| !editor.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|editor| !editor.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_owned());
    let failed = |what: &str, error: std::io::Error| ShellError::failed(format!("{what}: {error}"));
    let mut unique = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut unique))
        .map_err(|error| failed("cannot make a temporary name", error))?;
    let dir = std::env::temp_dir().join(format!(
        "luca-edit-{}",
        unique
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    ));
    std::fs::create_dir(&dir)
        .map_err(|error| failed("cannot make a temporary directory", error))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let file = dir.join(name);
    let outcome = (|| {
        std::fs::write(&file, text)
            .map_err(|error| failed("cannot write the temporary copy", error))?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&file)
            .status()
            .map_err(|error| failed("cannot start the editor", error))?;
        if !status.success() {
            return Err(ShellError::failed(format!(
                "the editor ({editor}) failed ({status}); nothing was written"
            )));
        }
        std::fs::read_to_string(&file).map_err(|error| failed("cannot read the edited copy", error))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// A method the gateway may not offer: its absence in one line.
fn optional_failure(failure: Failure, method: &str, missing: &str) -> ShellError {
    match failure {
        Failure::Server(error) if error.code == METHOD_NOT_FOUND => ShellError::failed(format!(
            "{missing}, which this gateway does not offer ({method} is unknown to it)"
        )),
        Failure::Server(error) => ShellError::failed(in_shell_words(&error)),
        other => from_failure(other),
    }
}

/// A `wf` answer for a person: one line per workflow, step or log entry.
fn render_workflow(out: &mut String, method: &str, result: &Value) {
    let text = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    match method {
        "mcp.agent.listWorkflows" => {
            for workflow in result["workflows"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{}\t{}\n",
                    text(&workflow["id"]),
                    text(&workflow["description"])
                ));
            }
            for error in result["errors"].as_array().into_iter().flatten() {
                let line = error["line"]
                    .as_u64()
                    .map(|line| format!(":{line}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "broken: {}{line}: {}; {}\n",
                    text(&error["file"]),
                    text(&error["problem"]),
                    text(&error["fix"])
                ));
            }
        }
        "mcp.agent.getWorkflowStatus" => {
            out.push_str(&format!(
                "{} {} {}\n",
                text(&result["execution_id"]),
                text(&result["workflow"]),
                text(&result["status"])
            ));
            for step in result["steps"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {}\t{}\n",
                    text(&step["id"]),
                    text(&step["status"])
                ));
            }
            if let Some(message) = result["error"]["message"].as_str() {
                out.push_str(&format!("error: {message}\n"));
            }
        }
        "mcp.agent.getWorkflowLogs" => {
            for step in result["steps"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "{}\t{}\tattempts {}\t{} ms\n",
                    text(&step["id"]),
                    text(&step["status"]),
                    step["attempts"],
                    step["duration_ms"]
                        .as_f64()
                        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"))
                ));
                if let Some(message) = step["error"]["message"].as_str() {
                    out.push_str(&format!("  error: {message}\n"));
                }
                if !step["output"].is_null() {
                    out.push_str(&format!(
                        "  output: {}\n",
                        proto::text::bounded(&step["output"].to_string(), 400)
                    ));
                }
            }
        }
        _ => out.push_str(&format!("{result:#}\n")),
    }
}
