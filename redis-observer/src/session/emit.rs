//! Emission: turning a pending entry and its outcome into the [`CommandRecord`] a sink sees, and
//! freeing the entry's arena space once it is gone.

use crate::commands::{self, UNKNOWN, redact};
use crate::record::{CommandRecord, ReplySummary, Sink, Status};
use crate::resp::{Kind, Reply};

use super::pending::Entry;
use super::{Core, ident};

/// What a record says about a command's outcome.
#[derive(Clone, Copy)]
pub(super) struct Outcome<'a> {
    pub(super) status: Status,
    pub(super) reply: Option<ReplySummary<'a>>,
    pub(super) latency_ns: Option<u64>,
    pub(super) resp_bytes: u64,
    pub(super) in_transaction: bool,
}

impl Outcome<'_> {
    /// No reply of its own (not sent, not come, or not this command's).
    pub(super) fn bare(status: Status, resp_bytes: u64, in_transaction: bool) -> Self {
        Outcome {
            status,
            reply: None,
            latency_ns: None,
            resp_bytes,
            in_transaction,
        }
    }
}

impl Core {
    /// A refused request's record: with the server's reply when it came, else with the text
    /// Redis sends.
    pub(super) fn emit_refused(&mut self, e: &Entry, r: Option<&Reply>, sink: &mut impl Sink) {
        let Some(pe) = e.proto else {
            return;
        };
        let mut buf = [0u8; 48];
        let (reply, latency, resp_bytes) = match r {
            Some(r) => (
                summary(r),
                Some(r.first_ts.saturating_sub(e.ts_last)),
                r.wire_len,
            ),
            None => {
                let text = pe.text(&mut buf);
                let s = ReplySummary {
                    kind: Kind::Error,
                    len: text.len() as i64,
                    text,
                    redacted: false,
                };
                (s, None, 0)
            }
        };
        self.emit(
            e,
            Outcome {
                status: Status::Error,
                reply: Some(reply),
                latency_ns: latency,
                resp_bytes,
                in_transaction: false,
            },
            sink,
        );
    }

    /// Hands the record to `sink`, then applies the identity change it carries (later commands
    /// see it, this one does not).
    pub(super) fn emit(&mut self, e: &Entry, o: Outcome<'_>, sink: &mut impl Sink) {
        // Every reply a record shows passes the redaction table's rules here.
        // Commands sent before a request-side gap (`barrier`) still pair for sure.
        let policy = if self.uncertain && self.barrier == 0 {
            e.redact.union(redact::UNCERTAIN_REPLY)
        } else {
            e.redact
        };
        let reply = o.reply.map(|r| redact::reply(r, policy));
        let arg_buf = self.bytes.slice(e.bytes_at, e.bytes_len as usize);
        let name: &[u8] = if e.id == UNKNOWN {
            arg_buf.get(..e.name_len as usize).unwrap_or_default()
        } else {
            commands::name(e.id).as_bytes()
        };
        let key = e.has_key.then(|| {
            let start = e.key_start as usize;
            arg_buf
                .get(start..start + e.key_len as usize)
                .unwrap_or_default()
        });
        sink.command(&CommandRecord {
            ts_ns: e.ts_first,
            conn: &self.meta,
            command: e.id,
            name,
            key,
            args: self.args.slice(e.args_at, e.args_len as usize),
            keys: self
                .args
                .slice(e.args_at + u64::from(e.args_len), e.keys_len as usize),
            arg_buf,
            argc: e.argc,
            status: o.status,
            reply,
            latency_ns: o.latency_ns,
            req_bytes: e.req_bytes,
            resp_bytes: o.resp_bytes,
            in_transaction: o.in_transaction,
            blocking: e.blocking && !o.in_transaction,
            protocol_error: e.proto,
        });
        // A refused request never ran: it changes nothing.
        if e.ident_len > 0 && e.proto.is_none() {
            let at = e.bytes_at.wrapping_add(u64::from(e.bytes_len));
            let change = self.bytes.slice(at, usize::from(e.ident_len));
            if ident::apply(&mut self.meta.ident, change, o.status, o.reply.as_ref()) {
                self.meta.ident.label_changed();
            }
        }
    }

    pub(super) fn pop_pending(&mut self) -> Option<Entry> {
        let e = self.pending.pop_front()?;
        self.barrier = self.barrier.saturating_sub(1);
        self.release();
        Some(e)
    }

    /// Frees arena space before the oldest live entry.
    pub(super) fn release(&mut self) {
        if let Some(oldest) = self.tx.front().or(self.pending.front()) {
            self.bytes.free_before(oldest.bytes_at);
            self.args.free_before(oldest.args_at);
        } else {
            self.bytes.clear();
            self.args.clear();
            // A burst of pipelined commands must not pin its peak for the connection's life.
            if self.pending.capacity() > 16 * 1024 {
                self.pending.shrink_to(1024);
            }
            if self.tx.capacity() > 16 * 1024 {
                self.tx.shrink_to(1024);
            }
        }
    }
}

/// The reply as it came; [`Core::emit`] redacts it.
pub(super) fn summary(r: &Reply) -> ReplySummary<'_> {
    let text = if r.kind.is_aggregate() {
        &[][..]
    } else {
        &r.text[..]
    };
    ReplySummary {
        kind: r.kind,
        len: r.len,
        text,
        redacted: false,
    }
}
