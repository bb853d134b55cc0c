//! The shell's paths: virtual, `/`-rooted paths of the file service,
//! resolved against the current directory the shell keeps. They are
//! normalised here (`.`, `..`, repeated slashes) and never rise above `/`;
//! the file service checks them again against its real root.

/// `path` resolved against `cwd` (itself absolute and normalised).
pub(crate) fn resolve(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !path.starts_with('/') {
        parts.extend(cwd.split('/').filter(|part| !part.is_empty()));
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn paths_resolve_against_the_current_directory() {
        let cases = [
            ("/", "", "/"),
            ("/", ".", "/"),
            ("/", "notes", "/notes"),
            ("/notes", "todo.md", "/notes/todo.md"),
            ("/notes", "./a/../b//c/", "/notes/b/c"),
            ("/notes", "..", "/"),
            ("/notes", "../../..", "/"),
            ("/notes", "/etc/../x", "/x"),
            ("/a/b", "../c", "/a/c"),
            ("/", "~", "/~"),
        ];
        for (cwd, path, expected) in cases {
            assert_eq!(resolve(cwd, path), expected, "{cwd} + {path}");
        }
    }
}
