//! The subcommands, one module each: `run` (the live daemon), `replay` (a capture file),
//! `tail` (reading the command log), `check` (can this host run `run`) and `top` (a live
//! terminal view of a running daemon).

pub mod check;
pub mod replay;
pub mod run;
pub mod tail;
pub mod top;
