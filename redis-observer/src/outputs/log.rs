//! The command log as an output: `--slow` and `--log-pushes` applied, then rendered lines.

use std::io;
use std::time::Duration;

use crate::command_log::CommandLog;
use crate::conn::ConnMeta;
use crate::record::{CommandRecord, Notice, Sink};
use crate::resp::Reply;

pub struct LogSink {
    log: Option<CommandLog>,
    /// `--slow`: log only commands at least this slow (metrics count all of them).
    slow: Option<Duration>,
    /// `--log-pushes`: also log push and pub/sub deliveries.
    log_pushes: bool,
}

impl LogSink {
    #[must_use]
    pub fn new(log: CommandLog, slow: Option<Duration>, log_pushes: bool) -> Self {
        LogSink {
            log: Some(log),
            slow,
            log_pushes,
        }
    }

    /// Whether the log takes this command under `--slow`.
    fn passes_slow(&self, rec: &CommandRecord<'_>) -> bool {
        match (self.slow, rec.latency_ns) {
            (None, _) => true,
            (Some(slow), Some(ns)) => u128::from(ns) >= slow.as_nanos(),
            // Unanswered and no-reply commands have no latency to compare.
            (Some(_), None) => false,
        }
    }
}

impl Sink for LogSink {
    fn command(&mut self, rec: &CommandRecord<'_>) {
        if self.passes_slow(rec) {
            if let Some(log) = self.log.as_mut() {
                log.command(rec);
            }
        }
    }

    fn push(&mut self, conn: &ConnMeta, ts_ns: u64, reply: &Reply) {
        if self.log_pushes {
            if let Some(log) = self.log.as_mut() {
                log.push(ts_ns, conn, reply);
            }
        }
    }

    fn notice(&mut self, conn: &ConnMeta, ts_ns: u64, notice: Notice) {
        if let Some(log) = self.log.as_mut() {
            log.notice(ts_ns, conn, &notice);
        }
    }

    fn flush(&mut self) {
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
    }

    fn close(&mut self) -> io::Result<()> {
        self.log.take().map_or(Ok(()), CommandLog::close)
    }
}
