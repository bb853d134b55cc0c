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

/// Formats a time as RFC 3339 in UTC, to the second.
pub fn rfc3339(time: std::time::SystemTime) -> Option<String> {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let days = i64::try_from(seconds / 86_400).ok()?;
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    ))
}

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
