//! The subcommands, one module each: `run` (the live daemon), `replay` (a capture file),
//! `tail` (reading the command log) and `check` (can this host run `run`).

pub mod check;
pub mod replay;
pub mod run;
pub mod tail;
