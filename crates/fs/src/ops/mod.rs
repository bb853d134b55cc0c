//! Confined file operations: typed inputs, typed results, one typed error.
//! Nothing here knows about JSON-RPC.
//!
//! Every access goes through [`Root`], which holds a `cap_std::fs::Dir`
//! opened on the virtual root. cap-std resolves every path with
//! `openat2(RESOLVE_BENEATH)` (or an equivalent manual walk on old kernels),
//! so symlinks are followed only while they stay beneath the root, and no
//! path string is ever compared with a prefix. Files are opened first and
//! checked through the opened handle (`fstat`), so there is no window
//! between a check and the use.

mod error;
pub mod grep;
pub mod manage;
pub mod read;
mod root;
pub mod walk;
pub mod write;

pub use error::{FsError, parse_path};
pub use root::{DEFAULT_GREP_MAX_LINE_BYTES, Entry, EntryType, Policy, Root, Watch};

pub use proto::time::rfc3339;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (seconds, expected) in cases {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(super::rfc3339(time).as_deref(), Some(expected));
        }
    }
}
