//! redis-observer: an eBPF-based Redis traffic observer.
//!
//! The protocol core (`reassembly`, `resp`, `session`, `commands`) is plain synchronous Rust with
//! no I/O, shared by the live daemon (`capture`) and `replay`.

pub mod capture;
pub mod check;
pub mod cli;
pub mod command_log;
pub mod commands;
pub mod conn;
pub mod debug;
pub mod events;
pub mod flows;
pub mod logging;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod privilege;
pub mod reassembly;
pub mod record;
pub mod replay;
pub mod replay_cmd;
pub mod resp;
pub mod run;
pub mod segment;
pub mod session;
pub mod tailcmd;
