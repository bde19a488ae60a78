//! The reply side: pairing each reply with the oldest command waiting for it (Redis answers a
//! connection's commands in order), and everything that is not such a reply: pushes, pub/sub
//! confirmations and messages, MONITOR lines, orphans, dropped AUTH replies, desyncs. Then the
//! connection's end.

use crate::commands::{self, CommandId};
use crate::record::{Dir, Notice, ReplySummary, Sink, Status};
use crate::resp::{DesyncReason, Kind, ProtocolError, Reply, ReplyEvent};

use super::emit::{Outcome, summary};
use super::pending::{Entry, Role};
use super::pubsub::{self, Confirmation, PubSub};
use super::tx::TxEnd;
use super::{Core, Multi};

impl Core {
    pub(super) fn on_reply_event(&mut self, ev: ReplyEvent<'_>, sink: &mut impl Sink) {
        if self.ignored {
            return;
        }
        match ev {
            ReplyEvent::Reply(r) => self.on_reply(r, sink),
            ReplyEvent::Desync(reason) => self.on_reply_desync(reason, sink),
        }
    }

    pub(super) fn on_reply(&mut self, r: &Reply, sink: &mut impl Sink) {
        if r.kind == Kind::Push {
            // Only RESP3 has pushes; they never answer a command, except the confirmations a
            // pub/sub command is waiting for.
            self.resp3 = true;
            if let Some(c) = pubsub::confirmation(r) {
                let consumed = self.confirm(&c, r, sink);
                self.pubsub.apply(&c);
                if consumed {
                    return;
                }
            }
            self.push(r, sink);
            return;
        }
        if !self.resp3 && r.kind == Kind::Array {
            let context = self.pubsub.subscribed() || self.loose_pubsub;
            if let Some(c) = pubsub::confirmation(r) {
                if context || self.head_wants(&c) {
                    let consumed = self.confirm(&c, r, sink);
                    self.pubsub.apply(&c);
                    if !consumed {
                        self.push(r, sink);
                    }
                    return;
                }
            } else if context && pubsub::is_message(r) {
                self.push(r, sink);
                return;
            }
        }
        if matches!(
            r.kind,
            Kind::Map | Kind::Set | Kind::Double | Kind::Boolean | Kind::BigNumber | Kind::Verbatim
        ) {
            // Types only RESP3 has (a session picked up mid-stream learns the protocol here).
            self.resp3 = true;
        }
        if self.monitor && r.kind == Kind::Simple && pubsub::is_monitor_line(&r.text) {
            self.push(r, sink);
            return;
        }
        if self.skip_replies > 0 {
            self.skip_replies -= 1;
            return;
        }
        self.pair(r, sink);
    }

    pub(super) fn push(&self, r: &Reply, sink: &mut impl Sink) {
        sink.push(&self.meta, r.first_ts, r);
    }

    /// The reply could be the head's: always, unless we are resynchronising and the reply began
    /// before the head command was fully sent.
    pub(super) fn causal(&mut self, head_ts_last: u64, r: &Reply) -> bool {
        if !self.resync || self.barrier > 0 {
            return true;
        }
        if r.first_ts < head_ts_last {
            return false;
        }
        self.resync = false;
        true
    }

    pub(super) fn head_wants(&self, c: &Confirmation) -> bool {
        self.pending.front().is_some_and(|h| wants(h.role, c))
    }

    /// `r` is a confirmation: count it for the head command if it is waiting for one.
    pub(super) fn confirm(&mut self, c: &Confirmation, r: &Reply, sink: &mut impl Sink) -> bool {
        let Some(head) = self.pending.front().copied() else {
            return false;
        };
        if !wants(head.role, c) || !self.causal(head.ts_last, r) {
            return false;
        }
        let expected = match head.role {
            Role::UnsubscribeAll(chan) => self.pubsub.count(chan).unwrap_or(1).max(1),
            _ => head.argc.max(1),
        };
        let Some(h) = self.pending.front_mut() else {
            return false;
        };
        if !h.got {
            (h.got, h.left) = (true, expected);
            (h.reply_ts, h.reply_kind, h.reply_len) = (r.first_ts, r.kind, r.len);
        }
        h.resp_bytes = h.resp_bytes.saturating_add(r.wire_len);
        h.left = if c.null_channel {
            0
        } else {
            h.left.saturating_sub(1)
        };
        if h.left == 0 {
            self.finish_confirmed(sink);
        }
        true
    }

    /// Emits the head pub/sub command with what its confirmations said.
    pub(super) fn finish_confirmed(&mut self, sink: &mut impl Sink) {
        let Some(h) = self.pending.front().copied() else {
            return;
        };
        let summary = ReplySummary {
            kind: h.reply_kind,
            len: h.reply_len,
            text: &[],
            redacted: false,
        };
        let latency = Some(h.reply_ts.saturating_sub(h.ts_last));
        self.emit(
            &h,
            Outcome {
                status: Status::Ok,
                reply: Some(summary),
                latency_ns: latency,
                resp_bytes: h.resp_bytes,
                in_transaction: false,
            },
            sink,
        );
        self.pop_pending();
    }

    pub(super) fn pair(&mut self, r: &Reply, sink: &mut impl Sink) {
        let head = loop {
            let Some(head) = self.pending.front().copied() else {
                if r.kind == Kind::Error
                    && self.refusal.is_none()
                    && let Some(pe) = ProtocolError::from_reply(&r.text)
                {
                    // Refused while the request was still arriving (Redis gave up on a long
                    // inline line, or an unauthenticated header): the session asks the request
                    // decoder for what it holds.
                    self.refusal = Some((pe, r.first_ts, r.wire_len));
                    return;
                }
                self.orphan(r, sink);
                return;
            };
            if head.got {
                // A pub/sub command is over once anything but its confirmations comes.
                self.finish_confirmed(sink);
                continue;
            }
            if head.auth && !auth_reply_fits(head.id, r.kind, &r.text) {
                // Not an answer AUTH can get: its reply was dropped (redis#15640), this one
                // is the next command's.
                self.emit(&head, Outcome::bare(Status::ReplyDropped, 0, false), sink);
                self.pop_pending();
                continue;
            }
            break head;
        };
        if !self.causal(head.ts_last, r) {
            self.notice(sink, Notice::OrphanReply);
            return;
        }
        if head.role == Role::ProtocolError {
            if r.kind != Kind::Error {
                // Redis answers a refused request only with `-ERR Protocol error: …`, then
                // closes: this reply is no known command's. The refusal may still come; if not,
                // `close` logs the refused request with Redis's text.
                self.notice(sink, Notice::OrphanReply);
                return;
            }
            self.emit_refused(&head, Some(r), sink);
            self.pop_pending();
            return;
        }
        if r.kind == Kind::Error
            && let Some(pe) = refused_by_server(&head, r)
        {
            // Refused for a limit only the server knew (or a read pattern): not a command it
            // ran. The request side stays open: if the server did not really close, later
            // replies still pair (a script cannot hide commands by returning this text).
            let mut h = head;
            h.proto = Some(pe);
            self.emit_refused(&h, Some(r), sink);
            self.pop_pending();
            return;
        }
        let ok = r.kind != Kind::Error;
        if ok
            && self.multi != Multi::No
            && head.role.queueable()
            && r.kind == Kind::Simple
            && r.text == b"QUEUED"
        {
            // Runs at EXEC: emitted then, with its element of EXEC's array.
            if let Some(mut q) = self.pending.pop_front() {
                self.barrier = self.barrier.saturating_sub(1);
                (q.reply_ts, q.resp_bytes) = (r.first_ts, r.wire_len);
                self.tx.push_back(q);
            }
            self.multi = Multi::Yes;
            return;
        }
        let mut absorbed = 0;
        match head.role {
            Role::Exec => absorbed = self.on_exec_reply(&head, r, sink),
            Role::Multi if ok => self.multi = Multi::Yes,
            Role::Discard if ok => {
                self.end_tx(TxEnd::Discarded, sink);
                self.multi = Multi::No;
            }
            Role::Reset if ok => self.reset(sink),
            Role::Hello => match r.kind {
                Kind::Map => self.resp3 = true,
                Kind::Array => self.resp3 = false,
                _ => {}
            },
            Role::Monitor if ok => self.monitor = true,
            Role::Psync if ok => {
                let latency = Some(r.first_ts.saturating_sub(head.ts_last));
                let o = Outcome {
                    status: Status::Ok,
                    reply: Some(summary(r)),
                    latency_ns: latency,
                    resp_bytes: r.wire_len,
                    in_transaction: false,
                };
                self.emit(&head, o, sink);
                self.on_psync_reply(&head, r, sink);
                self.pop_pending();
                return;
            }
            Role::Plain if ok => {
                // In RESP2 subscribed mode anything but PING gets an error, and inside MULTI
                // anything but an error is QUEUED: a plain answer proves neither holds.
                if !self.resp3 && head.id != commands::PING {
                    self.loose_pubsub = false;
                }
                if self.multi == Multi::Unknown {
                    self.multi = Multi::No;
                }
            }
            _ => {}
        }
        let latency = Some(r.first_ts.saturating_sub(head.ts_last));
        let status = if ok { Status::Ok } else { Status::Error };
        self.emit(
            &head,
            Outcome {
                status,
                reply: Some(summary(r)),
                latency_ns: latency,
                resp_bytes: r.wire_len,
                in_transaction: false,
            },
            sink,
        );
        self.pop_pending();
        if absorbed > 0 {
            // EXEC's array took the replies of the commands after it in place of the dropped
            // AUTH replies: they are those commands' replies.
            let n = r.children.len();
            let replies: Vec<Reply> = (n.saturating_sub(absorbed)..n)
                .filter_map(|i| child_reply(r, i))
                .collect();
            for c in &replies {
                self.pair(c, sink);
            }
        }
    }

    /// RESET: back to a fresh connection's state.
    pub(super) fn reset(&mut self, sink: &mut impl Sink) {
        self.end_tx(TxEnd::Discarded, sink);
        self.multi = Multi::No;
        self.resp3 = false;
        self.monitor = false;
        self.pubsub = PubSub::default();
        self.loose_pubsub = false;
    }

    pub(super) fn on_reply_desync(&mut self, reason: DesyncReason, sink: &mut impl Sink) {
        if self.link.is_some() {
            // The rest of the feed that revealed a replication stream, read as replies.
            return;
        }
        self.notice(
            sink,
            Notice::Desync {
                dir: Dir::Reply,
                reason,
            },
        );
        if reason == DesyncReason::NotResp {
            self.ignore(sink);
            return;
        }
        // Replies may be lost: nothing pending can be paired any more.
        let ends_tx = self
            .pending
            .iter()
            .any(|e| matches!(e.role, Role::Exec | Role::Discard | Role::Reset));
        let mut lost = self.drop_pending();
        if ends_tx {
            lost += self.tx.len() as u64;
            self.tx.clear();
            self.release();
        }
        if lost > 0 {
            self.notice(sink, Notice::CommandsLost(lost));
            self.multi = Multi::Unknown;
        }
        self.skip_replies = 0;
        self.barrier = 0;
        self.resync = true;
        self.uncertain = true;
        self.pubsub.unknown = true;
    }

    /// Forgets every pending command; returns how many were commands.
    pub(super) fn drop_pending(&mut self) -> u64 {
        let n = self
            .pending
            .iter()
            .filter(|e| e.role != Role::ProtocolError)
            .count() as u64;
        self.pending.clear();
        self.release();
        n
    }

    /// Not RESP: drop everything, produce nothing more.
    pub(super) fn ignore(&mut self, sink: &mut impl Sink) {
        self.ignored = true;
        let lost = self.drop_pending() + self.tx.len() as u64;
        self.tx.clear();
        self.release();
        if lost > 0 {
            self.notice(sink, Notice::CommandsLost(lost));
        }
    }

    pub(super) fn close(&mut self, sink: &mut impl Sink) {
        if self.ignored || self.closed {
            return;
        }
        self.end_tx(TxEnd::Closed, sink);
        while let Some(h) = self.pending.front().copied() {
            if h.got {
                self.finish_confirmed(sink);
                continue;
            }
            if h.role == Role::ProtocolError {
                self.emit_refused(&h, None, sink);
            } else {
                self.emit(&h, Outcome::bare(Status::Unanswered, 0, false), sink);
            }
            self.pop_pending();
        }
        self.link_down(sink);
        self.closed = true;
    }
}

/// `head` is waiting for confirmation `c`.
pub(super) fn wants(role: Role, c: &Confirmation) -> bool {
    match role {
        Role::Subscribe(chan) => c.subscribe && c.chan == chan,
        Role::Unsubscribe(chan) | Role::UnsubscribeAll(chan) => !c.subscribe && c.chan == chan,
        _ => false,
    }
}

/// Whether a reply of this shape can answer an AUTH or a HELLO … AUTH:
/// OK, a HELLO map or array, an error, or `+QUEUED` inside MULTI.
pub(super) fn auth_reply_fits(id: CommandId, kind: Kind, text: &[u8]) -> bool {
    match kind {
        Kind::Error => true,
        Kind::Simple => text == b"OK" || text == b"QUEUED",
        Kind::Map | Kind::Array => id == commands::HELLO,
        _ => false,
    }
}

/// Element `i` of `r` as a reply of its own (kind, length and kept text; an aggregate's own
/// elements are not kept), for pairing an element that belongs to a later command.
pub(super) fn child_reply(r: &Reply, i: usize) -> Option<Reply> {
    let c = r.children.get(i)?;
    Some(Reply {
        kind: c.kind,
        len: c.len,
        text: r.child_text(i).unwrap_or_default().to_vec(),
        first_ts: r.last_ts,
        last_ts: r.last_ts,
        ..Reply::default()
    })
}

/// `r` is Redis refusing `head`'s request for a reason the decoder could not know (the limits
/// for clients not yet authenticated, an inline line whose fate depended on Redis's reads), and
/// `head` is shaped so that it could be.
pub(super) fn refused_by_server(head: &Entry, r: &Reply) -> Option<ProtocolError> {
    let pe = ProtocolError::from_reply(&r.text)?;
    let fits = match pe {
        ProtocolError::InlineTooLong => head.req_bytes > 64 * 1024,
        // More than 10 arguments, name and subcommand included.
        ProtocolError::UnauthMultibulkLength => head.argc >= 9,
        ProtocolError::UnauthBulkLength => head.req_bytes > 16 * 1024,
        _ => false,
    };
    fits.then_some(pe)
}
