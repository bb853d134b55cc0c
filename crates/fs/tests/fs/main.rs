//! Integration tests of llmbasedos-fs, against the real binary over a real
//! UNIX socket, each with its own temp dir: one binary, one module per area.
//!
//! - [`containment`]: the containment table of issue 4 — every escape
//!   refused, nothing outside read or changed; the symlink-swap race;
//!   FIFOs and devices; symlink loops.
//! - [`atomicity`]: SIGKILL in the middle of large overwrites; an append
//!   that fails on a full file system.
//! - [`bad_input`]: malformed requests refused with useful messages.
//! - [`methods`]: what every method does.
//! - [`lifecycle`]: start-up errors (exit 78), `--print-caps`.
//! - [`limits`]: issue 12's resource attacks — trees thousands of levels
//!   deep, a line longer than any buffer, many heavy calls at once.
//! - [`modes`]: no setuid, setgid or sticky bit on what the server makes.
//! - [`semantic`]: embed, search and index status with the real model;
//!   their malformed requests; a missing model or runtime.

mod atomicity;
mod bad_input;
mod containment;
mod echo;
mod lifecycle;
mod limits;
mod methods;
mod modes;
mod semantic;
mod support;
