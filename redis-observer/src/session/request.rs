//! The request side: each command (or refused request) as Redis reads it, in command order.
//! What Redis knows when it reads a command is decided here: CLIENT REPLY silencing, MULTI
//! queueing, QUIT and protocol errors ending the stream. A command the server will answer is
//! copied into the arenas and waits in `pending`; one it will not answer is emitted at once.

use crate::commands::redact::{self, Policy};
use crate::commands::{self, CommandId, UNKNOWN};
use crate::record::{Dir, Notice, RecordArg, Sink, Status};
use crate::resp::{DesyncReason, Kind, ProtocolError, Reply, Request, RequestEvent};

use super::emit::Outcome;
use super::pending::{Chan, Entry, Fifo, Role};
use super::{Core, Multi, ident, parse_u64};

impl Core {
    pub(super) fn on_request(&mut self, ts: u64, ev: RequestEvent<'_>, sink: &mut impl Sink) {
        if self.req_closed || self.ignored {
            return;
        }
        match ev {
            RequestEvent::Command(req) => self.on_command(req, sink),
            // Redis resets the client on an empty command, which ends a SKIP.
            RequestEvent::Empty => self.skip_next = false,
            RequestEvent::ProtocolError(e, req) => self.on_protocol_error(ts, e, req, sink),
            RequestEvent::Desync(reason) => {
                self.notice(
                    sink,
                    Notice::Desync {
                        dir: Dir::Request,
                        reason,
                    },
                );
                if reason == DesyncReason::NotResp {
                    self.ignore(sink);
                } else {
                    // Commands were lost; their replies will come after those of the commands
                    // pending now.
                    self.barrier = self.pending.len();
                    self.resync = true;
                    self.uncertain = true;
                }
            }
        }
    }

    pub(super) fn on_command(&mut self, req: &Request, sink: &mut impl Sink) {
        self.await_command = false;
        if self.uncertain && self.reply_idle && self.pending.is_empty() && self.tx.is_empty() {
            // Everything the server sent before this command was consumed: pairing is sure again.
            self.uncertain = false;
        }
        let (id, name_args) = self.resolver.resolve(req);
        if id == UNKNOWN && is_http_guard(req) {
            // Redis's securityWarningCommand: closes without a reply, counts nothing.
            self.req_closed = true;
            return;
        }
        let role = self.role_of(id, req, name_args);
        // Silencing as Redis applies it: SKIP covers exactly this command, OFF until ON or RESET
        // (both of which clear OFF before replying).
        let skipped = std::mem::take(&mut self.skip_next);
        let off = self.reply_off;
        let answered = match role {
            Role::ReplyOn | Role::Reset => {
                self.reply_off = false;
                !skipped
            }
            Role::ReplyOff => {
                self.reply_off = true;
                false
            }
            Role::ReplySkip => {
                self.skip_next = !off;
                false
            }
            Role::ReplAck => false,
            _ => !(off || skipped),
        };
        match role {
            Role::Multi => self.multi_req = true,
            Role::Exec | Role::Discard | Role::Reset => self.multi_req = false,
            Role::Quit => self.req_closed = true,
            _ => {}
        }
        if answered {
            if self.full() {
                self.drop_oldest(sink);
            }
            let e = self.build(req, id, name_args, role);
            self.pending.push_back(e);
        } else {
            self.unanswered_by_design(req, id, name_args, role, sink);
        }
    }

    pub(super) fn role_of(&mut self, id: CommandId, req: &Request, name_args: usize) -> Role {
        let argc = req.argc.saturating_sub(name_args as u64);
        let queued = self.multi_req
            && !matches!(id, commands::MULTI | commands::EXEC | commands::DISCARD)
            && !matches!(id, commands::RESET | commands::QUIT | commands::WATCH);
        if queued {
            return Role::Plain;
        }
        let unsub = |chan| {
            if argc == 0 {
                Role::UnsubscribeAll(chan)
            } else {
                Role::Unsubscribe(chan)
            }
        };
        match id {
            commands::SUBSCRIBE => Role::Subscribe(Chan::Channel),
            commands::PSUBSCRIBE => Role::Subscribe(Chan::Pattern),
            commands::SSUBSCRIBE => Role::Subscribe(Chan::Shard),
            commands::UNSUBSCRIBE => unsub(Chan::Channel),
            commands::PUNSUBSCRIBE => unsub(Chan::Pattern),
            commands::SUNSUBSCRIBE => unsub(Chan::Shard),
            commands::CLIENT_REPLY if req.argc == 3 => {
                let is = |w: &[u8]| {
                    req.arg(2)
                        .is_some_and(|(b, len)| len == w.len() as u64 && b.eq_ignore_ascii_case(w))
                };
                if is(b"on") {
                    Role::ReplyOn
                } else if is(b"off") {
                    Role::ReplyOff
                } else if is(b"skip") {
                    Role::ReplySkip
                } else {
                    Role::Plain // -ERR syntax error
                }
            }
            commands::MULTI => Role::Multi,
            commands::EXEC => Role::Exec,
            commands::DISCARD => Role::Discard,
            commands::RESET => Role::Reset,
            commands::QUIT => Role::Quit,
            commands::HELLO => Role::Hello,
            commands::MONITOR => Role::Monitor,
            commands::REPLCONF => self.replconf(req),
            // Server bytes take the replication-aware path until the answer is known.
            commands::PSYNC => {
                self.link_watch = true;
                Role::Psync
            }
            commands::SYNC => {
                self.link_watch = true;
                Role::Sync
            }
            _ => Role::Plain,
        }
    }

    /// Redis's replconfCommand walks its option pairs and returns at once, without a reply, on
    /// `ack` or `getack`; `listening-port` names the replica for the link's metrics, and
    /// `main-ch-client-id` (Redis 8) or `rdb-channel 1` (Redis 8, Valkey) make the connection
    /// an RDB channel.
    #[cold]
    pub(super) fn replconf(&mut self, req: &Request) -> Role {
        if req.argc.is_multiple_of(2) {
            return Role::Plain; // -ERR syntax error
        }
        let mut i = 1;
        while let Some((opt, len)) = req.arg(i) {
            let is = |w: &[u8]| len == w.len() as u64 && opt.eq_ignore_ascii_case(w);
            if is(b"ack") || is(b"getack") {
                return Role::ReplAck;
            }
            if is(b"listening-port")
                && let Some(port) = req.arg(i + 1).and_then(|(v, _)| parse_u64(v))
            {
                self.repl_port = u16::try_from(port).unwrap_or(0);
            }
            // Redis 8: this connection is the RDB channel of a replica's main connection.
            if is(b"main-ch-client-id") {
                self.rdb_channel_of = req.arg(i + 1).and_then(|(v, _)| parse_u64(v));
            }
            if is(b"rdb-channel") {
                self.rdb_channel = req.arg(i + 1).is_some_and(|(v, _)| v == b"1");
            }
            i += 2;
        }
        Role::Plain
    }

    /// A command the server runs without answering: emitted now, with the reply-side effects it
    /// would have had.
    pub(super) fn unanswered_by_design(
        &mut self,
        req: &Request,
        id: CommandId,
        name_args: usize,
        role: Role,
        sink: &mut impl Sink,
    ) {
        match role {
            Role::Subscribe(_) | Role::Unsubscribe(_) | Role::UnsubscribeAll(_) if !self.resp3 => {
                // Its confirmations still come (CLIENT_PUSHING) with nothing waiting for them.
                self.loose_pubsub = true;
            }
            Role::Hello => match req.arg(1) {
                Some((b"3", 1)) => self.resp3 = true,
                Some((b"2", 1)) => self.resp3 = false,
                _ => {}
            },
            // Skipped: its +OK is not sent, the feed lines are.
            Role::Monitor => self.monitor = true,
            // Skipped: queued commands are still answered +QUEUED.
            Role::Multi => self.multi = Multi::Yes,
            Role::Reset => self.reset(sink),
            Role::ReplAck => self.on_ack(req, sink),
            _ => {}
        }
        let bytes_at = self.bytes.end();
        let args_at = self.args.end();
        let e = self.build(req, id, name_args, role);
        self.emit(&e, Outcome::bare(Status::NoReply, 0, false), sink);
        self.bytes.truncate(bytes_at);
        self.args.truncate(args_at);
        if role == Role::Exec {
            // Ran, outcome unseen (only possible when we mistracked): not "never ran".
            while let Some(q) = self.tx.pop_front() {
                self.emit(
                    &q,
                    Outcome::bare(Status::NoReply, q.resp_bytes, false),
                    sink,
                );
                self.release();
            }
            self.multi = Multi::No;
        }
    }

    /// Redis refuses the request, answers `-ERR Protocol error: …` and closes: one record with
    /// the name as sent (when it got that far) and that error, paired with the server's reply
    /// (its real text and latency) unless replies are off.
    pub(super) fn on_protocol_error(
        &mut self,
        ts: u64,
        e: ProtocolError,
        req: &Request,
        sink: &mut impl Sink,
    ) {
        self.req_closed = true;
        let (id, name_args) = if req.args.is_empty() {
            (UNKNOWN, 0)
        } else {
            self.resolver.resolve(req)
        };
        let silenced = self.reply_off || std::mem::take(&mut self.skip_next);
        if !silenced && self.full() {
            self.drop_oldest(sink);
        }
        let mut m = self.build(req, id, name_args, Role::ProtocolError);
        m.proto = Some(e);
        m.ts_last = ts;
        if req.args.is_empty() {
            m.ts_first = ts;
        }
        if silenced {
            let bytes_at = self.bytes.end();
            let args_at = self.args.end();
            self.emit_refused(&m, None, sink);
            self.bytes.truncate(bytes_at);
            self.args.truncate(args_at);
        } else {
            self.pending.push_back(m);
        }
    }

    /// Logs `req`, a request the server refused part-way with `reply`.
    pub(super) fn refused_partial(
        &mut self,
        pe: ProtocolError,
        req: &Request,
        reply: &Reply,
        sink: &mut impl Sink,
    ) {
        let (id, name_args) = if req.args.is_empty() {
            (UNKNOWN, 0)
        } else {
            self.resolver.resolve(req)
        };
        let bytes_at = self.bytes.end();
        let args_at = self.args.end();
        let mut m = self.build(req, id, name_args, Role::ProtocolError);
        m.proto = Some(pe);
        m.ts_last = m.ts_last.max(req.first_ts);
        self.emit_refused(&m, Some(reply), sink);
        self.bytes.truncate(bytes_at);
        self.args.truncate(args_at);
    }

    /// `max_pending` bounds the commands held: those awaiting a reply and those queued in a
    /// transaction. (Queued ones used to be unbounded: MULTI followed by a long stream of
    /// commands answered `+QUEUED` grew `tx` and the arenas without limit; found while writing
    /// the `session` fuzz target, whose memory bound catches it.)
    pub(super) fn full(&self) -> bool {
        let n = self.pending.len() + self.tx.len();
        n >= self.max_pending
            || (n > 0
                && n * size_of::<Entry>() + self.bytes.live_bytes() + self.args.live_bytes()
                    >= self.max_pending_bytes)
    }

    pub(super) fn drop_oldest(&mut self, sink: &mut impl Sink) {
        // Queued transaction commands are the oldest. Their `+QUEUED` came already, and EXEC's
        // array is matched from its end, so a dropped one is simply absent from the outcome.
        if self.tx.pop_front().is_some() {
            self.release();
            self.notice(sink, Notice::PendingOverflow);
            return;
        }
        if let Some(e) = self.pop_pending() {
            // Its reply (or its first confirmation) will still come: skip it, keep the FIFO true.
            if !e.got {
                self.skip_replies = self.skip_replies.saturating_add(1);
            }
            self.notice(sink, Notice::PendingOverflow);
        }
    }

    pub(super) fn blank_entry(&self, id: CommandId, role: Role) -> Entry {
        Entry {
            ts_first: 0,
            ts_last: 0,
            req_bytes: 0,
            argc: 0,
            bytes_at: self.bytes.end(),
            args_at: self.args.end(),
            left: 0,
            reply_ts: 0,
            resp_bytes: 0,
            reply_len: 0,
            bytes_len: 0,
            key_start: 0,
            key_len: 0,
            args_len: 0,
            keys_len: 0,
            name_len: 0,
            ident_len: 0,
            id,
            role,
            reply_kind: Kind::Null,
            has_key: false,
            redact: Policy::NONE,
            got: false,
            blocking: false,
            auth: false,
            proto: None,
        }
    }

    /// Copies what a record shows of `req` to the back of the arenas.
    pub(super) fn build(
        &mut self,
        req: &Request,
        id: CommandId,
        name_args: usize,
        role: Role,
    ) -> Entry {
        let mut e = self.blank_entry(id, role);
        e.ts_first = req.first_ts;
        e.ts_last = req.last_ts;
        e.req_bytes = req.wire_len;
        e.argc = req.argc.saturating_sub(name_args as u64);
        let policy = redact::policy(id, req);
        e.redact = policy;
        e.blocking = commands::is_blocking(id, req);
        e.auth = id == commands::AUTH
            || (id == commands::HELLO
                && req
                    .arg(2)
                    .is_some_and(|(a, len)| len == 4 && a.eq_ignore_ascii_case(b"AUTH")));
        // Offsets within this entry's bytes: small, since the keep limits are clamped.
        let rel = |bytes: &Fifo<u8>| {
            u32::try_from(bytes.end().wrapping_sub(e.bytes_at)).unwrap_or(u32::MAX)
        };

        if id == UNKNOWN
            && let Some((name, _)) = req.arg(0)
        {
            // The name as sent, up to `keep_name_bytes` in all: with its subcommand when the
            // container is known (`CLIENT FOO`).
            let name = name.get(..self.keep_name_bytes).unwrap_or(name);
            self.bytes.extend(name);
            let room = self.keep_name_bytes.saturating_sub(name.len() + 1);
            if name_args == 2
                && room > 0
                && let Some((sub, _)) = req.arg(1)
            {
                self.bytes.extend(b" ");
                self.bytes.extend(sub.get(..room).unwrap_or(sub));
            }
            self.bytes.tail_mut(e.bytes_at).make_ascii_uppercase();
            e.name_len = rel(&self.bytes);
        }

        let key = commands::first_key(id, req);
        let last = req.args.len().min(name_args.saturating_add(self.keep_args));
        for i in name_args..last {
            let Some((prefix, len)) = req.arg(i) else {
                break;
            };
            let start = rel(&self.bytes);
            let arg = if policy.secret_arg(id, req, i) {
                RecordArg {
                    start,
                    kept: 0,
                    len,
                    redacted: true,
                }
            } else {
                let kept = prefix.get(..self.keep_arg_bytes).unwrap_or(prefix);
                self.bytes.extend(kept);
                if key == Some(i) {
                    (e.has_key, e.key_start, e.key_len) = (true, start, len32(kept.len()));
                }
                RecordArg {
                    start,
                    kept: len32(kept.len()),
                    len,
                    redacted: false,
                }
            };
            self.args.push(arg);
            e.args_len += 1;
        }
        // A key past the kept arguments (EVAL's, say) is kept on its own.
        if let Some(k) = key.filter(|_| !e.has_key)
            && let Some((prefix, _)) = req.arg(k)
            && !policy.secret_arg(id, req, k)
        {
            let kept = prefix.get(..self.keep_arg_bytes).unwrap_or(prefix);
            (e.has_key, e.key_start, e.key_len) = (true, rel(&self.bytes), len32(kept.len()));
            self.bytes.extend(kept);
        }
        if self.keep_keys > 0 {
            e.keys_len = self.build_keys(req, id, &e, name_args);
        }
        e.bytes_len = rel(&self.bytes);
        // After the record's bytes, so freed with them; never shown.
        e.ident_len = ident::encode(id, req, &mut self.bytes);
        e
    }

    /// Every key of `req` (bounded), after the entry's arguments in the arenas, for outputs
    /// that read [`CommandRecord::keys`]. A key the entry's arguments already hold (the usual
    /// case) points at those bytes; others are copied.
    fn build_keys(&mut self, req: &Request, id: CommandId, e: &Entry, name_args: usize) -> u32 {
        let (bytes, args, keep) = (&mut self.bytes, &mut self.args, self.keep_key_bytes);
        let (at, args_at) = (e.bytes_at, e.args_at);
        let args_len = usize::try_from(e.args_len).unwrap_or(0);
        let mut n = 0;
        commands::keys(id, req, self.keep_keys, |i| {
            if let Some((prefix, len)) = req.arg(i) {
                let kept = prefix.get(..keep).unwrap_or(prefix);
                let shown = i
                    .checked_sub(name_args)
                    .and_then(|j| args.slice(args_at, args_len).get(j).copied())
                    .filter(|a| !a.redacted && a.kept as usize >= kept.len());
                let start = match shown {
                    Some(a) => a.start,
                    None => {
                        let start =
                            len32(usize::try_from(bytes.end().wrapping_sub(at)).unwrap_or(0));
                        bytes.extend(kept);
                        start
                    }
                };
                args.push(RecordArg {
                    start,
                    kept: len32(kept.len()),
                    len,
                    redacted: false,
                });
                n += 1;
            }
        });
        n
    }
}

/// Redis closes, without a reply, a connection whose command is `POST` or `Host:` (an HTTP
/// request sent to Redis).
pub(super) fn is_http_guard(req: &Request) -> bool {
    matches!(req.arg(0), Some((name, len))
        if len == name.len() as u64
            && (name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")))
}

pub(super) fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
