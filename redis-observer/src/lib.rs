//! redis-observer: an eBPF-based Redis traffic observer.
//!
//! # Layout
//!
//! The pipeline, in the order a byte goes through it (`docs/architecture.md` has the picture):
//!
//! - [`capture`] (live, the only module that talks to the kernel) or [`replay`] (pcap files)
//!   produce [`segment::Segment`]s.
//! - [`pipeline`] keeps the flow table ([`flows`]) and creates each connection's
//!   [`conn::ConnMeta`]; [`reassembly`] puts each direction's bytes in order.
//! - [`resp`] decodes commands and replies; [`session`] pairs them into
//!   [`record::CommandRecord`]s, pushes and [`events::Notice`]s, using the command table in
//!   [`commands`].
//! - [`outputs`] fans records out to [`metrics`], the [`command_log`] and the hot-key
//!   [`analytics`] (`GET /top`, `replay --top N`).
//!
//! - [`attribution`] (live) names the local processes at both ends of each connection.
//!
//! Around it: [`cli`] and the subcommands in [`cmd`] (`run`, `replay`, `tail`, `check`);
//! [`debug`] taps; [`privilege`] and [`logging`] for the daemon itself.
//!
//! The protocol core (`reassembly`, `resp`, `session`, `commands`, `pipeline`) is plain
//! synchronous Rust with no I/O, shared by the live daemon and `replay`.

pub mod analytics;
pub mod attribution;
pub mod budget;
pub mod capture;
pub mod cli;
pub mod cmd;
pub mod command_log;
pub mod commands;
pub mod conn;
pub mod debug;
pub mod events;
pub mod flows;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod privilege;
pub mod reassembly;
pub mod record;
pub mod replay;
pub mod resp;
pub mod segment;
pub mod session;
