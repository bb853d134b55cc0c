//! What the llmbasedos tests and benchmarks share (a dev-dependency only),
//! so that each harness exists once:
//!
//! - [`process`]: children that log to a file, are started without the
//!   systemd and llmbasedos variables the run inherited, die with it
//!   (`PR_SET_PDEATHSIG`) and are killed by pid on drop; their memory from
//!   /proc; pinning to CPU 0; [`wait_until`], the one bounded poll.
//! - [`server`]: a backend server under test ([`ServerProcess`]): waiting
//!   until its socket accepts, its stderr, exit, signals. Each crate's
//!   tests keep only how *their* binary is launched.
//! - [`wire`]: the blocking client of the NUL-delimited backend wire the
//!   integration tests use ([`Client`]), and the frame helpers.
//! - [`measure`]: sequential and concurrent timing loops, p50/p99
//!   ([`Figures`], [`percentile`]), the benches' smoke switch and options.
//! - [`corpus`]: a real corpus no one here wrote (the Python
//!   documentation's sources) as prose sentences.
//! - [`bench`]: what the benchmarks drive: a prepared-frame NUL client,
//!   the gateway over WebSocket, Streamable HTTP and the stdio bridge, a
//!   newline-JSON reader of a child's pipe, a gateway config with tokens.
//!
//! It is `bench-support` (not renamed `test-support`) because every bench
//! already names it and the other branches of this change edit those
//! benches: one crate, grown, not a second one beside it.
//!
//! Nothing here blocks forever: every wait and every read is bounded by
//! [`PATIENCE`] or by a bound the caller gives.

pub mod bench;
pub mod corpus;
pub mod measure;
pub mod process;
pub mod server;
pub mod wire;

use std::time::Duration;

pub use measure::{Figures, percentile};
pub use process::{ChildProcess, Memory, pin_to_cpu0, wait_until};
pub use server::ServerProcess;
pub use wire::{Client, Received, frame, request};

/// How long any start-up wait or any single read may take before a test or
/// a benchmark fails. Generous: it bounds liveness, it does not measure
/// speed (a debug build on a busy 2-core machine).
pub const PATIENCE: Duration = Duration::from_secs(20);
