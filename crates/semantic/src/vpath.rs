//! Virtual paths: what clients name files with.
//!
//! A virtual path is a `/`-rooted string such as `/notes/todo.md`, where `/`
//! is the service's root. It is only ever turned into a path *relative* to
//! the root directory handle, never joined to a host path: confinement is
//! the kernel's job (the fs server's `ops::Root`), this module only refuses
//! what is malformed and normalises the rest.
//!
//! It lives here, not in fs, because both need it and fs depends on
//! semantic: the fs server parses clients' paths with it (`fs::vpath` is
//! this module), and the indexer's walk and [`crate::DirSource`] normalise
//! with it, so there is one normal form.

use std::fmt;
use std::path::PathBuf;

/// Longest virtual path accepted, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name accepted, in bytes (Linux's NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// A normalised virtual path: no empty, `.` or `..` components.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualPath {
    components: Vec<String>,
}

/// Why a string is not a usable virtual path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathProblem {
    /// Malformed: empty, a NUL byte, too long, not `/`-rooted.
    Malformed(String),
    /// A `..` component: refused whatever it resolves to, since lexical
    /// resolution and the kernel's disagree through symlinks.
    ParentComponent,
}

impl VirtualPath {
    /// The root itself, `/`.
    pub fn root() -> VirtualPath {
        VirtualPath {
            components: Vec::new(),
        }
    }

    /// Parses a client's path. Relative paths are not accepted: every path
    /// is named from the root, so that a client cannot be confused about
    /// where it points.
    pub fn parse(text: &str) -> Result<VirtualPath, PathProblem> {
        if text.is_empty() {
            return Err(PathProblem::Malformed(
                "the path is empty; give a path from the root such as \"/\" or \"/notes/todo.md\""
                    .to_owned(),
            ));
        }
        if text.contains('\0') {
            return Err(PathProblem::Malformed(
                "the path contains a NUL byte, which no file name can hold".to_owned(),
            ));
        }
        if text.len() > MAX_PATH_BYTES {
            return Err(PathProblem::Malformed(format!(
                "the path is {} bytes long; the limit is {MAX_PATH_BYTES}",
                text.len()
            )));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PathProblem::Malformed(
                "paths start with \"/\", the root of the file service (e.g. \"/notes/todo.md\")"
                    .to_owned(),
            ));
        };
        let mut components = Vec::new();
        for component in rest.split('/') {
            match component {
                "" | "." => {}
                ".." => return Err(PathProblem::ParentComponent),
                name if name.len() > MAX_NAME_BYTES => {
                    return Err(PathProblem::Malformed(format!(
                        "the name {:?}… is {} bytes long; the limit is {MAX_NAME_BYTES}",
                        name.chars().take(16).collect::<String>(),
                        name.len()
                    )));
                }
                name => components.push(name.to_owned()),
            }
        }
        Ok(VirtualPath { components })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The parent; the root is its own parent.
    pub fn parent(&self) -> VirtualPath {
        let mut components = self.components.clone();
        components.pop();
        VirtualPath { components }
    }

    /// This path with one more component (a name read from a directory).
    pub fn join(&self, name: &str) -> VirtualPath {
        let mut components = self.components.clone();
        components.push(name.to_owned());
        VirtualPath { components }
    }

    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &VirtualPath) -> bool {
        self.components.starts_with(&other.components)
    }

    /// The components after `base`, joined with `/` (for glob matching).
    pub fn relative_to(&self, base: &VirtualPath) -> Option<String> {
        self.components
            .strip_prefix(base.components.as_slice())
            .map(|rest| rest.join("/"))
    }

    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// The path relative to the root directory handle: `.` for the root.
    pub fn relative(&self) -> PathBuf {
        if self.components.is_empty() {
            PathBuf::from(".")
        } else {
            self.components.iter().collect()
        }
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.components.is_empty() {
            return f.write_str("/");
        }
        for component in &self.components {
            write!(f, "/{component}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("/", "/", "."),
            ("//", "/", "."),
            ("/a", "/a", "a"),
            ("/a/", "/a", "a"),
            ("/./a//b/.", "/a/b", "a/b"),
            ("/a b/ü\\c", "/a b/ü\\c", "a b/ü\\c"),
        ];
        for (input, shown, relative) in cases {
            let path = VirtualPath::parse(input).expect(input);
            assert_eq!(path.to_string(), shown, "{input}");
            assert_eq!(path.relative(), PathBuf::from(relative), "{input}");
        }
    }

    #[test]
    fn refuses_malformed_and_parent_components() {
        let long_name = format!("/{}", "x".repeat(256));
        let long_path = "/ab".repeat(2000);
        let cases: [(&str, &str); 6] = [
            ("", "empty"),
            ("/a\0b", "NUL"),
            ("a/b", "start with \"/\""),
            (&long_name, "255"),
            (&long_path, "4096"),
            ("\0", "NUL"),
        ];
        for (input, expected) in cases {
            match VirtualPath::parse(input) {
                Err(PathProblem::Malformed(message)) => {
                    assert!(message.contains(expected), "{input:?}: {message}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        for input in ["/..", "/../x", "/a/..", "/a/../b", "/a/b/../../..", "/..//"] {
            assert_eq!(
                VirtualPath::parse(input),
                Err(PathProblem::ParentComponent),
                "{input}"
            );
        }
    }

    #[test]
    fn relations() {
        let a = VirtualPath::parse("/a/b/c").expect("valid");
        let base = VirtualPath::parse("/a").expect("valid");
        assert!(a.starts_with(&base));
        assert!(!base.starts_with(&a));
        assert_eq!(a.relative_to(&base).as_deref(), Some("b/c"));
        assert_eq!(a.parent().to_string(), "/a/b");
        assert_eq!(VirtualPath::root().parent(), VirtualPath::root());
        assert_eq!(a.name(), Some("c"));
    }
}
