//! redis-observer: an eBPF-based Redis traffic observer.
//!
//! The protocol core (`reassembly`, `resp`, `session`, `commands`) is plain synchronous Rust with
//! no I/O, shared by the live daemon (`capture`) and `replay`.

pub mod capture;
pub mod check;
pub mod cli;
pub mod logging;
pub mod replay_cmd;
pub mod run;
pub mod segment;
pub mod tail;
