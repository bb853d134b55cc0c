//! `upstreams`: third-party MCP servers, each a stdio command or a
//! Streamable HTTP URL, with a unique name and tool prefix.

use super::super::{ConfigError, RawUpstream, Upstream, UpstreamTransport};
use super::Error;

pub(super) fn upstreams(
    raw: Vec<RawUpstream>,
    error: Error<'_>,
) -> Result<Vec<Upstream>, ConfigError> {
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(raw.len());
    for (index, upstream) in raw.into_iter().enumerate() {
        let simple = |text: &str| {
            (1..=32).contains(&text.len())
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        };
        if !simple(&upstream.name) {
            return Err(error(
                &format!("upstreams[{index}].name"),
                "must be 1 to 32 letters, digits or dashes".to_owned(),
            ));
        }
        if upstreams.iter().any(|other| other.name == upstream.name) {
            return Err(error(
                &format!("upstreams[{index}].name"),
                format!("{:?} is used twice", upstream.name),
            ));
        }
        let prefix = upstream.prefix.unwrap_or_else(|| upstream.name.clone());
        if !simple(&prefix) {
            return Err(error(
                &format!("upstreams[{index}].prefix"),
                "must be 1 to 32 letters, digits or dashes (tools become <prefix>_<tool>)"
                    .to_owned(),
            ));
        }
        let key = |field: &str| format!("upstreams[{index}].{field}");
        let transport = match (upstream.command, upstream.url) {
            (Some(command), None) => {
                let mut command = command.into_iter();
                let Some(program) = command.next().filter(|program| !program.is_empty()) else {
                    return Err(error(
                        &key("command"),
                        "must name the program to run, e.g. [npx, -y, some-mcp-server]".to_owned(),
                    ));
                };
                if upstream.bearer_token_credential.is_some() {
                    return Err(error(
                        &key("bearer_token_credential"),
                        "goes with url, not command".to_owned(),
                    ));
                }
                UpstreamTransport::Stdio {
                    program,
                    args: command.collect(),
                    env: upstream.env.into_iter().collect(),
                }
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(error(
                        &key("url"),
                        format!("{url:?} must be an http:// or https:// URL"),
                    ));
                }
                if !upstream.env.is_empty() {
                    return Err(error(&key("env"), "goes with command, not url".to_owned()));
                }
                UpstreamTransport::Http {
                    url,
                    bearer_token_credential: upstream.bearer_token_credential,
                }
            }
            _ => {
                return Err(error(
                    &format!("upstreams[{index}]"),
                    "needs exactly one of command (a stdio server) or url (a Streamable HTTP server)".to_owned(),
                ));
            }
        };
        upstreams.push(Upstream {
            name: upstream.name,
            prefix,
            transport,
        });
    }
    Ok(upstreams)
}
