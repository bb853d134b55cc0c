//! `file:///` URIs of virtual paths, for MCP resources: `file:///notes/a%20b.md`
//! is the virtual path `/notes/a b.md`. Percent-encoding is decoded before
//! the path is parsed, so `%2e%2e` is refused exactly as `..` is.

/// The scheme and empty authority every fs resource URI starts with.
pub const PREFIX: &str = "file://";

/// The virtual path string a `file:///…` URI names (still to be parsed as a
/// [`crate::vpath::VirtualPath`]), or why it names none (quoting the URI
/// in part: it is the client's).
pub fn to_path(uri: &str) -> Result<String, String> {
    let shown = proto::text::echo(uri);
    let Some(rest) = uri.strip_prefix(PREFIX) else {
        return Err(format!(
            "{shown:?} is not a file URI of this service; resource URIs look like file:///notes/todo.md"
        ));
    };
    if !rest.starts_with('/') {
        return Err(format!(
            "{shown:?} names a host; resource URIs have an empty host, like file:///notes/todo.md"
        ));
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let mut bytes = Vec::with_capacity(rest.len());
    let mut input = rest.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = input.next().and_then(hex);
            let low = input.next().and_then(hex);
            match (high, low) {
                (Some(high), Some(low)) => bytes.push(high << 4 | low),
                _ => return Err(format!("{shown:?} has a malformed %-escape")),
            }
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown:?} does not decode to UTF-8"))
}

/// The URI of a virtual path (given as its `/`-rooted display form).
pub fn from_path(path: &str) -> String {
    let mut uri = String::with_capacity(PREFIX.len() + path.len());
    uri.push_str(PREFIX);
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_decodes() {
        let cases = [
            ("/", "file:///"),
            ("/notes/todo.md", "file:///notes/todo.md"),
            ("/a b/ü%.txt", "file:///a%20b/%C3%BC%25.txt"),
            ("/q?#", "file:///q%3F%23"),
        ];
        for (path, uri) in cases {
            assert_eq!(from_path(path), uri);
            assert_eq!(to_path(uri).as_deref(), Ok(path));
        }
        assert_eq!(to_path("file:///%2e%2e/x").as_deref(), Ok("/../x"));
        assert_eq!(to_path("file:///a%00b").as_deref(), Ok("/a\0b"));
        assert_eq!(to_path("file:///a?query#frag").as_deref(), Ok("/a"));
    }

    #[test]
    fn refuses_what_is_not_a_local_file_uri() {
        for uri in [
            "http://x/y",
            "file://host/etc/passwd",
            "file:///%zz",
            "file:///%c3",
            "/plain",
        ] {
            assert!(to_path(uri).is_err(), "{uri}");
        }
    }
}
