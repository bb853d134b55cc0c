//! How results look to a person: listings, tool lists and matches as
//! aligned columns. (`--json` prints the results themselves instead.)

use std::fmt::Write as _;

use proto::mcp::Tool;
use serde_json::Value;

use crate::command::Builtin;

/// `ls`: one name per line, directories with a trailing `/`; long form
/// adds the type, the size and the modification time (UTC, to the minute).
pub(crate) fn listing(out: &mut String, listing: &Value, long: bool) {
    let entries = listing
        .get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|entry| {
            let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("");
            let kind = text("type");
            let suffix = match kind {
                "directory" => "/",
                "symlink" => "@",
                _ => "",
            };
            let modified = text("modified");
            // RFC 3339 "2026-11-24T03:58:12Z" → "2026-11-24 03:58".
            let modified = match (modified.get(..10), modified.get(11..16)) {
                (Some(day), Some(time)) => format!("{day} {time}"),
                _ => modified.to_owned(),
            };
            [
                kind_letter(kind).to_owned(),
                entry
                    .get("size")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .to_string(),
                modified,
                format!("{}{suffix}", text("name")),
            ]
        })
        .collect();
    if !long {
        for [_, _, _, name] in &rows {
            let _ = writeln!(out, "{name}");
        }
        return;
    }
    let size_width = rows.iter().map(|row| row[1].len()).max().unwrap_or(0);
    for [kind, size, modified, name] in &rows {
        let _ = writeln!(out, "{kind} {size:>size_width$}  {modified}  {name}");
    }
}

fn kind_letter(kind: &str) -> &'static str {
    match kind {
        "directory" => "d",
        "file" => "-",
        "symlink" => "l",
        _ => "?",
    }
}

/// `tools`: name and the first sentence of the description.
pub(crate) fn tools(out: &mut String, tools: &[Tool]) {
    let width = tools.iter().map(|tool| tool.name.len()).max().unwrap_or(0);
    for tool in tools {
        let description = tool.description.as_deref().unwrap_or("");
        let _ = writeln!(out, "{:width$}  {}", tool.name, first_sentence(description));
    }
}

/// The first sentence (or line) of a description.
pub(crate) fn first_sentence(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    let mut search_from = 0;
    while let Some(found) = line[search_from..].find(". ") {
        let end = search_from + found;
        // "e.g. " and "i.e. " do not end a sentence.
        if !(line[..end].ends_with("e.g") || line[..end].ends_with("i.e")) {
            return &line[..=end];
        }
        search_from = end + 2;
    }
    line
}

/// `grep`: `path:line:text`, as grep prints matches in several files.
pub(crate) fn grep(out: &mut String, result: &Value) {
    for found in result
        .get("matches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = found.get("path").and_then(Value::as_str).unwrap_or("");
        let line = found.get("line").and_then(Value::as_u64).unwrap_or(0);
        let text = found.get("text").and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(out, "{path}:{line}:{}", text.trim_end_matches('\n'));
    }
}

/// `search`: each result's path, lines and score on one line, its
/// snippet indented below, results apart by a blank line, the best first
/// (as the service ranks them).
pub(crate) fn search(out: &mut String, result: &Value) {
    let results = result
        .get("results")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if results.is_empty() {
        let _ = writeln!(
            out,
            "nothing found; `mcp.fs.embed` indexes files not indexed yet"
        );
        return;
    }
    for (number, found) in results.iter().enumerate() {
        let path = found.get("path").and_then(Value::as_str).unwrap_or("");
        let line = |key: &str| found.get(key).and_then(Value::as_u64).unwrap_or(0);
        let (start, end) = (line("start_line"), line("end_line"));
        let lines = if end > start {
            format!("lines {start}-{end}")
        } else {
            format!("line {start}")
        };
        let score = found.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        if number > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{path}  {lines}  score {score:.2}");
        let snippet = found.get("snippet").and_then(Value::as_str).unwrap_or("");
        for text in snippet.trim_matches('\n').lines() {
            let _ = writeln!(out, "    {}", text.trim_end());
        }
    }
}

/// `help`: every command's usage and summary, in two columns.
pub(crate) fn help(out: &mut String, builtins: &[Builtin]) {
    // A usage longer than this gets its summary on the next line.
    const COLUMN: usize = 30;
    let width = builtins
        .iter()
        .map(|builtin| builtin.usage.len())
        .filter(|width| *width <= COLUMN)
        .max()
        .unwrap_or(0);
    for builtin in builtins {
        if builtin.usage.len() > width {
            let _ = writeln!(
                out,
                "  {}\n  {:width$}  {}",
                builtin.usage, "", builtin.summary
            );
        } else {
            let _ = writeln!(out, "  {:width$}  {}", builtin.usage, builtin.summary);
        }
    }
    out.push_str(
        "\nAny method or tool name works as a command: `mcp.fs.read path=/notes/a.md`, `fs_read /notes/a.md`.\n\
         Paths are relative to the current directory. `help COMMAND` explains one command, method or tool.\n",
    );
}

/// One progress notification (its params): `3/10 message`.
pub(crate) fn progress(update: &Value) -> String {
    let number = |key: &str| update.get(key).and_then(Value::as_f64);
    let mut line = match (number("progress"), number("total")) {
        (Some(done), Some(total)) => format!("{done}/{total}"),
        (Some(done), None) => format!("{done}"),
        _ => String::new(),
    };
    if let Some(message) = update.get("message").and_then(Value::as_str) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(message);
    }
    line
}

/// The text blocks of an MCP tool result, joined.
pub(crate) fn tool_text(result: &Value) -> String {
    result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `licence`: the tier, why, the limits, usage and what remains.
pub(crate) fn licence(out: &mut String, check: &Value) {
    let text = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    };
    if check.get("licensed") != Some(&Value::Bool(true)) {
        let _ = writeln!(out, "no licence: {}", text(&check["reason"]));
        return;
    }
    let _ = writeln!(
        out,
        "tier: {} (licence: {})",
        text(&check["tier"]),
        text(&check["machine_tier"])
    );
    let _ = writeln!(out, "licence: {}", text(&check["reason"]));
    if let Some(licensee) = check["licensee"]
        .as_str()
        .filter(|licensee| !licensee.is_empty())
    {
        let _ = writeln!(out, "licensee: {licensee}");
    }
    if let Some(expires) = check["expires"].as_str() {
        let _ = writeln!(out, "expires: {expires}");
    }
    let limits = &check["limits"];
    if let Some(rate) = limits["rate"].as_object() {
        let _ = writeln!(
            out,
            "rate: {} requests per {} s",
            rate.get("requests").unwrap_or(&Value::Null),
            rate.get("window_secs").unwrap_or(&Value::Null)
        );
    }
    let _ = writeln!(
        out,
        "language model: {}",
        if limits["llm"]["access"] == Value::Bool(true) {
            "allowed"
        } else {
            "not allowed"
        }
    );
    let _ = writeln!(
        out,
        "tokens used: {} today, {} this month",
        check["usage"]["day"], check["usage"]["month"]
    );
    remaining_tokens(out, check);
}

/// What remains of the token quotas, when one applies.
pub(crate) fn remaining_tokens(out: &mut String, check: &Value) {
    let remaining = &check["remaining"];
    let day = remaining["day"].as_u64();
    let month = remaining["month"].as_u64();
    match (day, month) {
        (None, None) => {}
        (day, month) => {
            let show = |value: Option<u64>| {
                value.map_or_else(|| "unlimited".to_owned(), |value| value.to_string())
            };
            let _ = writeln!(
                out,
                "tokens left: {} today, {} this month",
                show(day),
                show(month)
            );
        }
    }
}

/// `sync remotes`: one remote a line, name and type.
pub(crate) fn sync_remotes(out: &mut String, result: &Value) {
    let remotes = result.get("remotes").and_then(Value::as_array);
    for remote in remotes.into_iter().flatten() {
        let text = |key: &str| remote.get(key).and_then(Value::as_str).unwrap_or("");
        let destination = remote.get("destination_allowed").and_then(Value::as_bool) == Some(true);
        let _ = writeln!(
            out,
            "{:<20} {:<12}{}",
            text("name"),
            text("type"),
            if destination {
                " (destination allowed)"
            } else {
                ""
            }
        );
    }
}

/// A job's status in a few lines.
pub(crate) fn sync_job(out: &mut String, job: &Value) {
    let text = |key: &str| job.get(key).and_then(Value::as_str).unwrap_or("");
    let number = |key: &str| job.get(key).and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(
        out,
        "{} {}: {} {} -> {}",
        text("job_id"),
        text("state"),
        text("mode"),
        text("source"),
        text("destination")
    );
    let _ = writeln!(
        out,
        "  {} bytes, {} files transferred, {} checks, {} deletes, {} errors",
        number("bytes"),
        number("files_transferred"),
        number("checks"),
        number("deletes"),
        number("errors")
    );
    if let Some(outcome) = job.get("outcome").and_then(Value::as_str) {
        let _ = writeln!(out, "  {outcome}");
    }
    for error in job
        .get("last_errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(out, "  error: {}", error.as_str().unwrap_or(""));
    }
    for difference in job
        .pointer("/check/differences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |key: &str| difference.get(key).and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(out, "  {}: {}", field("kind"), field("path"));
    }
}

/// `sync history`: one job a line, newest first.
pub(crate) fn sync_jobs(out: &mut String, result: &Value) {
    let jobs = result.get("jobs").and_then(Value::as_array);
    for job in jobs.into_iter().flatten() {
        let text = |key: &str| job.get(key).and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(
            out,
            "{:<14} {:<11} {:<5} {} -> {}  {}",
            text("job_id"),
            text("state"),
            text("mode"),
            text("source"),
            text("destination"),
            text("ended_at")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_results_are_a_list_of_path_lines_score_and_snippet() {
        let result = json!({"query": "q", "results": [
            {"path": "/a.md", "score": 0.8123, "start_line": 3, "end_line": 5,
             "snippet": "first\nsecond  \n"},
            {"path": "/b.md", "score": 0.25, "start_line": 7, "end_line": 7, "snippet": "only"},
        ]});
        let mut out = String::new();
        search(&mut out, &result);
        assert_eq!(
            out,
            "/a.md  lines 3-5  score 0.81\n    first\n    second\n\n/b.md  line 7  score 0.25\n    only\n"
        );
        let mut none = String::new();
        search(&mut none, &json!({"query": "q", "results": []}));
        assert_eq!(
            none,
            "nothing found; `mcp.fs.embed` indexes files not indexed yet\n"
        );
    }

    #[test]
    fn listings_show_names_or_long_rows() {
        let result = json!({"entries": [
            {"name": "notes", "type": "directory", "size": 4096, "modified": "2026-11-24T03:58:12Z"},
            {"name": "a.md", "type": "file", "size": 12, "modified": "2026-11-24T04:00:00Z"},
            {"name": "link", "type": "symlink", "size": 5},
        ]});
        let mut short = String::new();
        listing(&mut short, &result, false);
        assert_eq!(short, "notes/\na.md\nlink@\n");
        let mut long = String::new();
        listing(&mut long, &result, true);
        assert_eq!(
            long,
            "d 4096  2026-11-24 03:58  notes/\n-   12  2026-11-24 04:00  a.md\nl    5    link@\n"
        );
    }

    #[test]
    fn progress_reads_as_done_of_total_and_message() {
        let cases = [
            (json!({"progress": 3, "total": 10}), "3/10"),
            (
                json!({"progress": 1.5, "message": "reading"}),
                "1.5 reading",
            ),
            (json!({"message": "working"}), "working"),
        ];
        for (update, expected) in cases {
            assert_eq!(progress(&update), expected);
        }
    }

    #[test]
    fn descriptions_shorten_to_their_first_sentence() {
        let cases = [
            ("Reads a file. Then more.", "Reads a file."),
            ("One line\nsecond", "One line"),
            ("v1.2 is fine", "v1.2 is fine"),
            (
                "Finds names (e.g. \"*.md\"). More.",
                "Finds names (e.g. \"*.md\").",
            ),
            ("", ""),
        ];
        for (text, expected) in cases {
            assert_eq!(first_sentence(text), expected);
        }
    }
}
