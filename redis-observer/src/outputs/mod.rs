//! Where records go: the metrics, the command log, and any other output, composed as one
//! [`Sink`].
//!
//! Every output implements [`Sink`] (only the methods it needs; the rest default to nothing).
//! [`Outputs`] fans each record out to the metrics, which always exist, and then to every other
//! output in the order they were added. [`build`] makes the outputs from the command line, once,
//! for both `run` and `replay`; a new output is a new file here plus one line in [`build`].

mod log;
mod top;

use std::io;

pub use log::LogSink;
pub use top::TopSink;

use crate::cli::OutputArgs;
use crate::command_log::{CommandLog, Renderer, Reopener, Target};
use crate::conn::ConnMeta;
use crate::metrics::Metrics;
use crate::record::{CommandRecord, FlowEvent, Notice, ReplEvent, Sink};
use crate::resp::Reply;

/// The metrics plus any number of other outputs, as one [`Sink`]. Flush after each batch of
/// events; close at the end.
pub struct Outputs {
    pub metrics: Metrics,
    others: Vec<Box<dyn Sink + Send>>,
}

impl Outputs {
    #[must_use]
    pub fn new(metrics: Metrics) -> Self {
        Outputs {
            metrics,
            others: Vec::new(),
        }
    }

    /// Adds an output after the ones already there.
    #[must_use]
    pub fn with(mut self, sink: Box<dyn Sink + Send>) -> Self {
        self.others.push(sink);
        self
    }

    /// Closes every output (writing everything) and gives the metrics back, e.g. for
    /// `--metrics-out`; the first error is returned.
    pub fn finish(mut self) -> (Metrics, io::Result<()>) {
        let r = Sink::close(&mut self);
        (self.metrics, r)
    }
}

impl Sink for Outputs {
    fn flow(&mut self, conn: &ConnMeta, event: FlowEvent) {
        self.metrics.flow(conn, event);
        for s in &mut self.others {
            s.flow(conn, event);
        }
    }

    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.metrics.command(rec);
        for s in &mut self.others {
            s.command(rec);
        }
    }

    fn push(&mut self, conn: &ConnMeta, ts_ns: u64, reply: &Reply) {
        self.metrics.push(conn, ts_ns, reply);
        for s in &mut self.others {
            s.push(conn, ts_ns, reply);
        }
    }

    fn notice(&mut self, conn: &ConnMeta, ts_ns: u64, notice: Notice) {
        self.metrics.notice(conn, ts_ns, notice);
        for s in &mut self.others {
            s.notice(conn, ts_ns, notice);
        }
    }

    fn replication(&mut self, conn: &ConnMeta, replica: std::net::SocketAddr, event: ReplEvent) {
        self.metrics.replication(conn, replica, event);
        for s in &mut self.others {
            s.replication(conn, replica, event);
        }
    }

    fn kernel_counters(&mut self, totals: &redis_ebpf_common::Counters) {
        self.metrics.kernel_counters(totals);
        for s in &mut self.others {
            s.kernel_counters(totals);
        }
    }

    fn flush(&mut self) {
        self.metrics.flush();
        for s in &mut self.others {
            s.flush();
        }
    }

    fn tick(&mut self, now_ns: u64) {
        self.metrics.tick(now_ns);
        for s in &mut self.others {
            s.tick(now_ns);
        }
    }

    fn close(&mut self) -> io::Result<()> {
        let mut first = self.metrics.close();
        for s in &mut self.others {
            let r = s.close();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// How the command log writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    /// A writer thread behind a bounded queue: the pipeline never blocks (`run`).
    Queued,
    /// On the caller's thread, nothing dropped (`replay`).
    Direct,
}

/// The outputs the command line asks for, around `metrics`, and the handle that reopens the
/// log file (SIGHUP). The log's target was opened by the caller (before privileges are
/// dropped); the hot-key analytics (`top`) were set up by the caller too (`run` serves them,
/// `replay` prints them).
pub fn build(
    args: &OutputArgs,
    mut metrics: Metrics,
    log_target: Target,
    mode: LogMode,
    top: Option<TopSink>,
) -> io::Result<(Outputs, Reopener)> {
    metrics.set_client_label(args.client_label);
    let renderer = Renderer::new(crate::cmd::run::format(args.log_format));
    let log = match mode {
        LogMode::Queued => CommandLog::spawn(log_target, renderer, metrics.log_counters())?,
        LogMode::Direct => CommandLog::direct(log_target, renderer, metrics.log_counters()),
    };
    let reopener = log.reopener();
    let mut outputs =
        Outputs::new(metrics).with(Box::new(LogSink::new(log, args.slow, args.log_pushes)));
    if let Some(top) = top {
        outputs = outputs.with(Box::new(top));
    }
    Ok((outputs, reopener))
}
