//! The command log: one line per command (JSON per docs/contract.md, or aligned text), plus
//! push and notice lines, written without ever blocking the pipeline.
//!
//! - [`render`]: lines rendered by hand into a reused buffer.
//! - [`CommandLog`]: the producer side. [`CommandLog::spawn`] hands batches of lines to a writer
//!   thread through a bounded queue; when the queue is full, lines are dropped and counted
//!   (`redis_observer_log_dropped_total{reason="queue_full"}`), and one notice line later says
//!   how many. [`CommandLog::direct`] writes synchronously (replay).
//! - [`Target`]: stdout, or a file created 0600, rotated by size, reopened on SIGHUP.
//! - [`LogSink`](crate::outputs::LogSink) (in `outputs`) applies `--slow` and `--log-pushes`
//!   and feeds a `CommandLog` from the pipeline.
//!
//! Choices the contract leaves open:
//! - `reply`: simple strings, integers, doubles, big numbers as written (`OK`, `42`); bulk and
//!   verbatim strings quoted (`"bar"`); `(nil)` for nulls; `true`/`false`; `[3 items]` for
//!   arrays, sets and pushes, `{2 pairs}` for maps; `null` for errors (their text is in
//!   `error`) and when there was no reply. A cut value ends with `…(+N bytes)`.
//! - `args` beyond [`Bounds::args`](crate::limits::RecordLimits::args) end with one
//!   `"…(+N more)"` element.
//! - Bytes that are not UTF-8 appear as the four characters `\xNN` (JSON `"\\xNN"`); a literal
//!   backslash in valid text is not doubled, so the two can look alike.
//! - `latency_us` has three decimals (ns resolution).
//! - `"in_transaction": true` is added for commands run by EXEC.
//! - Push and notice lines carry every field (`command`, `key`, ... `null`), so consumers see
//!   one shape; notices add `"notice"` with a sentence.
//! - `--slow`: a command is written when its latency is at least the threshold; commands with
//!   no latency (`unanswered`, `no_reply`, `aborted`) are written only without `--slow`. Pushes
//!   (with `--log-pushes`) and notices are written regardless.
//! - Text format columns: time, client, server, command, key (cut to its column), status,
//!   latency, reply (`(error) ...` for errors, `-` for none); no arguments.
//! - Lines reach the writer in batches: the pipeline's outputs are flushed after each batch
//!   of events (every drain tick), and closed at the end.

pub mod render;
pub mod schema;
mod writer;

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use render::{Bounds, Format, NoticeLine, Renderer, capture_fields, write_json, write_text};
pub use schema::LogLine;
pub use writer::{Reopener, RotatingFile, Target};

use crate::conn::ConnMeta;
use crate::metrics::LogCounters;
use crate::record::{CommandRecord, Notice};
use crate::resp::Reply;

/// A batch is handed to the writer once it holds this much.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Batches the queue holds: with [`BATCH_BYTES`], at most about 4 MiB of lines waiting.
pub const QUEUE_BATCHES: usize = 64;
/// How long [`CommandLog::close`] waits for the writer to take the last lines and finish.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Producer side of the command log. Owned by the pipeline thread; never blocks there.
pub struct CommandLog {
    renderer: Renderer,
    batch: Vec<u8>,
    /// Lines dropped since the last "dropped" notice.
    dropped: u64,
    counters: LogCounters,
    mode: Mode,
}

enum Mode {
    Queued {
        tx: Option<SyncSender<Vec<u8>>>,
        spare_rx: Receiver<Vec<u8>>,
        /// A buffer kept when a hand-off failed, to avoid allocating for the next try.
        spare: Option<Vec<u8>>,
        thread: Option<JoinHandle<io::Result<()>>>,
        reopener: Reopener,
    },
    Direct {
        target: Target,
        errors: writer::ErrorReporter,
        reopener: Reopener,
    },
}

impl CommandLog {
    /// Starts a writer thread for `target`, fed through a queue of [`QUEUE_BATCHES`] batches.
    pub fn spawn(target: Target, renderer: Renderer, counters: LogCounters) -> io::Result<Self> {
        Self::spawn_with(target, renderer, counters, QUEUE_BATCHES)
    }

    /// As [`CommandLog::spawn`] with a different queue depth (at least 1).
    pub fn spawn_with(
        target: Target,
        renderer: Renderer,
        counters: LogCounters,
        queue_batches: usize,
    ) -> io::Result<Self> {
        let depth = queue_batches.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel(depth + 1);
        let reopener = Reopener::default();
        let thread = {
            let reopener = reopener.clone();
            let lost = counters.write_error.clone();
            std::thread::Builder::new()
                .name("command-log".into())
                .spawn(move || {
                    writer::writer_loop(rx, spare_tx, target, reopener, lost, 2 * BATCH_BYTES)
                })?
        };
        Ok(CommandLog {
            renderer,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            dropped: 0,
            counters,
            mode: Mode::Queued {
                tx: Some(tx),
                spare_rx,
                spare: None,
                thread: Some(thread),
                reopener,
            },
        })
    }

    /// Writes on the caller's thread (replay): batches of [`BATCH_BYTES`] go straight to
    /// `target`; nothing is dropped. Write errors are counted and the first is returned by
    /// [`CommandLog::close`].
    pub fn direct(target: Target, renderer: Renderer, counters: LogCounters) -> Self {
        CommandLog {
            renderer,
            batch: Vec::with_capacity(BATCH_BYTES + 4096),
            dropped: 0,
            mode: Mode::Direct {
                target,
                errors: writer::ErrorReporter::new(counters.write_error.clone()),
                reopener: Reopener::default(),
            },
            counters,
        }
    }

    /// Handle to ask the writer to reopen its file (see [`Reopener::on_sighup`]).
    pub fn reopener(&self) -> Reopener {
        match &self.mode {
            Mode::Queued { reopener, .. } | Mode::Direct { reopener, .. } => reopener.clone(),
        }
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }

    /// Logs a command (the caller applies `--slow`).
    pub fn command(&mut self, rec: &CommandRecord<'_>) {
        if self.make_room() {
            self.renderer.command(rec, &mut self.batch);
        }
    }

    /// Logs a push or pub/sub delivery.
    pub fn push(&mut self, ts_ns: u64, conn: &ConnMeta, reply: &Reply) {
        if self.make_room() {
            self.renderer.push(ts_ns, conn, reply, &mut self.batch);
        }
    }

    /// Logs a notice from the pairing.
    pub fn notice(&mut self, ts_ns: u64, conn: &ConnMeta, n: &Notice) {
        if self.make_room() {
            self.renderer
                .notice(ts_ns, Some(conn), NoticeLine::Pipeline(n), &mut self.batch);
        }
    }

    /// Hands the lines gathered so far to the writer (or writes them, in direct mode). Call it
    /// after each batch of events: lines otherwise wait until [`BATCH_BYTES`] accumulate.
    pub fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.hand_off();
        }
        if let Mode::Direct { target, errors, .. } = &mut self.mode {
            if let Err(e) = target.flush() {
                errors.error(e);
            }
        }
    }

    /// Writes everything still pending (a last "dropped" notice included), stops the writer
    /// and returns the first write error. Waits at most [`CLOSE_TIMEOUT`] for a stuck writer
    /// (a blocked pipe); lines it could not take are counted as dropped.
    pub fn close(mut self) -> io::Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> io::Result<()> {
        if self.dropped > 0 {
            self.write_dropped_notice();
        }
        match &mut self.mode {
            Mode::Queued { tx, thread, .. } => {
                let Some(tx) = tx.take() else {
                    return Ok(());
                };
                let deadline = Instant::now() + CLOSE_TIMEOUT;
                if !self.batch.is_empty() {
                    let mut batch = std::mem::take(&mut self.batch);
                    loop {
                        match tx.try_send(batch) {
                            Ok(()) => break,
                            Err(TrySendError::Full(b)) if Instant::now() < deadline => {
                                batch = b;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                                self.counters.queue_full.inc_by(count_lines(&b));
                                break;
                            }
                        }
                    }
                }
                drop(tx);
                let Some(thread) = thread.take() else {
                    return Ok(());
                };
                while !thread.is_finished() {
                    if Instant::now() >= deadline {
                        tracing::warn!("command log: the writer did not finish in time");
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "command log writer did not finish",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                match thread.join() {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::other("command log writer panicked")),
                }
            }
            Mode::Direct { target, errors, .. } => {
                if !self.batch.is_empty() {
                    errors.write(target, &self.batch);
                    self.batch.clear();
                }
                if let Err(e) = target.flush() {
                    errors.error(e);
                }
                errors.first.take().map_or(Ok(()), Err)
            }
        }
    }

    /// Whether a line may be appended now; counts it as dropped if not. Writes the pending
    /// "dropped" notice first when there is room again.
    fn make_room(&mut self) -> bool {
        if self.batch.len() >= BATCH_BYTES && !self.hand_off() {
            self.dropped += 1;
            self.counters.queue_full.inc();
            return false;
        }
        if self.dropped > 0 {
            self.write_dropped_notice();
        }
        true
    }

    fn write_dropped_notice(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.renderer.notice(
            now,
            None,
            NoticeLine::Dropped(self.dropped),
            &mut self.batch,
        );
        self.dropped = 0;
    }

    /// Hands the batch over (queued) or writes it (direct). False if the queue is full.
    fn hand_off(&mut self) -> bool {
        match &mut self.mode {
            Mode::Queued {
                tx,
                spare_rx,
                spare,
                ..
            } => {
                let Some(tx) = tx.as_ref() else {
                    return false;
                };
                let next = match spare.take() {
                    Some(b) => b,
                    None => match spare_rx.try_recv() {
                        Ok(b) => b,
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                            Vec::with_capacity(BATCH_BYTES + 4096)
                        }
                    },
                };
                let full = std::mem::replace(&mut self.batch, next);
                match tx.try_send(full) {
                    Ok(()) => true,
                    Err(TrySendError::Full(full)) => {
                        *spare = Some(std::mem::replace(&mut self.batch, full));
                        false
                    }
                    Err(TrySendError::Disconnected(mut full)) => {
                        // The writer is gone (only a panic does that): count and discard, so
                        // memory stays bounded.
                        self.counters.write_error.inc_by(count_lines(&full));
                        full.clear();
                        *spare = Some(full);
                        true
                    }
                }
            }
            Mode::Direct {
                target,
                errors,
                reopener,
            } => {
                if reopener.take() {
                    if let Err(e) = target.reopen() {
                        errors.error(e);
                    }
                }
                errors.write(target, &self.batch);
                self.batch.clear();
                true
            }
        }
    }
}

impl Drop for CommandLog {
    /// Best effort for a log that was not closed: hand over what is pending, do not wait.
    fn drop(&mut self) {
        if let Mode::Queued { tx, .. } = &mut self.mode {
            if let Some(tx) = tx.take() {
                if !self.batch.is_empty() {
                    let _ = tx.try_send(std::mem::take(&mut self.batch));
                }
            }
        } else {
            let _ = self.close_inner();
        }
    }
}

fn count_lines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

#[cfg(test)]
mod tests;
