//! iCalendar invites (RFC 5545): not written yet.
