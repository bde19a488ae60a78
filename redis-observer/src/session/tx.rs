//! Transactions: what EXEC's reply (or DISCARD, RESET, the connection's end) says about the
//! commands queued since MULTI.
//!
//! A command answered `+QUEUED` waits in `Core::tx` and is emitted once, here: with its element
//! of EXEC's array when the transaction ran, or with no latency when it never ran (see
//! [`TxEnd`]).

use crate::record::{ReplySummary, Sink, Status};
use crate::resp::{Kind, Reply};

use super::emit::Outcome;
use super::pending::Entry;
use super::reply::auth_reply_fits;
use super::{Core, Multi};

/// How queued transaction commands end when they did not run.
#[derive(Clone, Copy)]
pub(super) enum TxEnd<'a> {
    /// EXEC answered `-EXECABORT`: status `aborted`, with that reply as theirs.
    Aborted(&'a Reply),
    /// A WATCH abort (EXEC answered null), `EXEC without MULTI`, DISCARD, RESET: status
    /// `aborted`, no reply.
    Discarded,
    /// Connection ended: `unanswered`.
    Closed,
}

impl Core {
    /// EXEC's reply. Returns how many of the array's last elements are not the transaction's
    /// (see [`Core::run_tx`]).
    pub(super) fn on_exec_reply(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let mut absorbed = 0;
        match r.kind {
            Kind::Array => absorbed = self.run_tx(exec, r, sink),
            Kind::Error if r.text.starts_with(b"EXECABORT") => self.end_tx(TxEnd::Aborted(r), sink),
            // Rejected EXEC (arity...): the transaction goes on. `EXEC without MULTI` ends it.
            Kind::Error if !r.text.ends_with(b"without MULTI") => return 0,
            // A WATCH abort (null), or nothing we can tell ran.
            _ => self.end_tx(TxEnd::Discarded, sink),
        }
        self.multi = Multi::No;
        absorbed
    }

    /// EXEC ran the transaction: each queued command gets its element of the array. Elements are
    /// matched from the end, so commands queued before a mid-stream start are simply absent; a
    /// queued command left without an element is `unanswered`.
    ///
    /// A queued AUTH whose element has a shape AUTH cannot get had its reply dropped (redis#15640:
    /// the array header still counts it): the elements after it belong to the next queued
    /// commands, and the last ones to the commands sent after EXEC; their number is returned.
    fn run_tx(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let elements = u64::try_from(r.len).unwrap_or(0);
        let queued = self.tx.len() as u64;
        let kept_all = r.children.len() as u64 == elements;
        if kept_all && elements == queued && self.tx.iter().any(|q| q.auth) {
            return self.run_tx_auth(exec, r, sink);
        }
        let unmatched = queued.saturating_sub(elements);
        let first = elements.saturating_sub(queued);
        let latency = Some(r.first_ts.saturating_sub(exec.ts_last));
        let mut j = 0u64;
        while let Some(q) = self.tx.front().copied() {
            if j < unmatched {
                self.emit(
                    &q,
                    Outcome::bare(Status::Unanswered, q.resp_bytes, true),
                    sink,
                );
            } else {
                let idx = usize::try_from(first + (j - unmatched)).unwrap_or(usize::MAX);
                self.emit_element(&q, r, idx, latency, sink);
            }
            self.tx.pop_front();
            self.release();
            j += 1;
        }
        0
    }

    /// [`Core::run_tx`] for a transaction with an AUTH in it, every element kept.
    fn run_tx_auth(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let latency = Some(r.first_ts.saturating_sub(exec.ts_last));
        let mut idx = 0;
        while let Some(q) = self.tx.front().copied() {
            let fits = r.children.get(idx).is_some_and(|ch| {
                !q.auth || auth_reply_fits(q.id, ch.kind, r.child_text(idx).unwrap_or_default())
            });
            if fits {
                self.emit_element(&q, r, idx, latency, sink);
                idx += 1;
            } else {
                let o = Outcome {
                    latency_ns: latency,
                    ..Outcome::bare(Status::ReplyDropped, q.resp_bytes, true)
                };
                self.emit(&q, o, sink);
            }
            self.tx.pop_front();
            self.release();
        }
        r.children.len().saturating_sub(idx)
    }

    /// Emits queued command `q` with element `idx` of EXEC's array `r` as its outcome, and EXEC's
    /// latency. An element past the children the decoder keeps: it ran, its outcome is unknown.
    fn emit_element(
        &mut self,
        q: &Entry,
        r: &Reply,
        idx: usize,
        latency: Option<u64>,
        sink: &mut impl Sink,
    ) {
        let (status, reply) = match r.children.get(idx) {
            Some(ch) => {
                let status = if ch.kind == Kind::Error {
                    Status::Error
                } else {
                    Status::Ok
                };
                // Secret replies are redacted when emitted (`redact::reply`).
                let s = ReplySummary {
                    kind: ch.kind,
                    len: ch.len,
                    text: r.child_text(idx).unwrap_or_default(),
                    redacted: false,
                };
                (status, Some(s))
            }
            None => (Status::Ok, None),
        };
        let o = Outcome {
            status,
            reply,
            latency_ns: latency,
            resp_bytes: q.resp_bytes,
            in_transaction: true,
        };
        self.emit(q, o, sink);
    }

    /// Queued commands that will never run: `aborted`, or `unanswered` when the connection
    /// ended; no latency either way.
    pub(super) fn end_tx(&mut self, end: TxEnd<'_>, sink: &mut impl Sink) {
        while let Some(q) = self.tx.front().copied() {
            let o = match end {
                TxEnd::Aborted(r) => Outcome {
                    reply: Some(super::emit::summary(r)),
                    ..Outcome::bare(Status::Aborted, q.resp_bytes, true)
                },
                TxEnd::Discarded => Outcome::bare(Status::Aborted, q.resp_bytes, true),
                TxEnd::Closed => Outcome::bare(Status::Unanswered, q.resp_bytes, true),
            };
            self.emit(&q, o, sink);
            self.tx.pop_front();
            self.release();
        }
    }
}
