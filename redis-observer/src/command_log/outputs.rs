//! The pipeline's sink: every record is counted, and logged if the filters let it through.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::CommandLog;
use crate::metrics::Metrics;
use crate::record::{CommandRecord, FlowEvent, Notice, Sink};
use crate::resp::Reply;

/// Which time a notice line shows ([`Notice`]s carry no timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeClock {
    /// The wall clock (the live daemon: notices follow the traffic closely).
    Wall,
    /// The timestamp of the latest command or push seen (replay: capture time).
    LastRecord,
}

/// Metrics plus an optional command log, as one [`Sink`]. Call [`Outputs::flush`] after each
/// batch of events and [`Outputs::close`] at the end.
pub struct Outputs {
    pub metrics: Metrics,
    pub log: Option<CommandLog>,
    /// `--slow`: log only commands at least this slow (metrics count all of them).
    pub slow: Option<Duration>,
    /// `--log-pushes`: also log push and pub/sub deliveries.
    pub log_pushes: bool,
    pub notice_clock: NoticeClock,
    last_ts_ns: u64,
}

impl Outputs {
    pub fn new(
        metrics: Metrics,
        log: Option<CommandLog>,
        slow: Option<Duration>,
        log_pushes: bool,
    ) -> Self {
        Outputs {
            metrics,
            log,
            slow,
            log_pushes,
            notice_clock: NoticeClock::Wall,
            last_ts_ns: 0,
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

    fn notice_ts(&self) -> u64 {
        match self.notice_clock {
            NoticeClock::LastRecord if self.last_ts_ns != 0 => self.last_ts_ns,
            _ => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// Hands pending log lines to the writer and latency observations to the registry; call
    /// after each batch of events.
    pub fn flush(&mut self) {
        self.metrics.flush_local();
        if let Some(log) = self.log.as_mut() {
            log.flush();
        }
    }

    /// Closes the log (writing everything) and gives the metrics back, e.g. for
    /// `--metrics-out`.
    pub fn close(mut self) -> (Metrics, io::Result<()>) {
        let r = match self.log.take() {
            Some(log) => log.close(),
            None => Ok(()),
        };
        (self.metrics, r)
    }
}

impl Sink for Outputs {
    fn flow(&mut self, _client: SocketAddr, server: SocketAddr, event: FlowEvent) {
        self.metrics.record_flow(server, event);
    }

    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.metrics.record_command(rec);
        self.last_ts_ns = self.last_ts_ns.max(rec.ts_ns);
        if self.log.is_some() && self.passes_slow(rec) {
            if let Some(log) = self.log.as_mut() {
                log.command(rec);
            }
        }
    }

    fn push(&mut self, ts_ns: u64, client: SocketAddr, server: SocketAddr, reply: &Reply) {
        self.metrics.record_push(server, reply.wire_len);
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        if self.log_pushes {
            if let Some(log) = self.log.as_mut() {
                log.push(ts_ns, client, server, reply);
            }
        }
    }

    fn notice(&mut self, client: SocketAddr, server: SocketAddr, notice: Notice) {
        self.metrics.record_notice(&notice);
        if self.log.is_some() {
            let ts = self.notice_ts();
            if let Some(log) = self.log.as_mut() {
                log.notice(ts, client, server, &notice);
            }
        }
    }
}
