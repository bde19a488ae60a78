//! Who the client says it is: the identity changes a command asks for, and applying them once
//! the command's outcome is known.
//!
//! A command that may change the identity (`CLIENT SETNAME`, `CLIENT SETINFO`, `AUTH`, `HELLO`,
//! `SELECT`, `RESET`) has its change encoded at request time after the record's kept bytes in
//! the session's arena (`Entry::ident_len` bytes): the arena already lives exactly as long as the
//! entry, and the password, which the record redacts, is never copied. The change is applied when
//! the command is emitted, after its record, so it reaches later commands only. Other commands
//! pay one comparison of their id.
//!
//! Encoding: `tag, len, bytes[len]` items, values cut to [`IDENT_BYTES`].

use crate::commands::{self, CommandId, UNKNOWN};
use crate::conn::{IDENT_BYTES, Identity, ident_value};
use crate::record::{ReplySummary, Status};
use crate::resp::{Kind, Request};

use super::pending::Fifo;

const NAME: u8 = b'N';
const LIB_NAME: u8 = b'L';
const LIB_VER: u8 = b'V';
const USER: u8 = b'U';
const DB: u8 = b'D';
const RESET: u8 = b'R';
const HELLO: u8 = b'H';

/// Whether `id` may change the identity (cheap: the common commands fail the first compare).
#[inline]
fn concerned(id: CommandId) -> bool {
    id == UNKNOWN
        || id == commands::CLIENT_SETNAME
        || id == commands::CLIENT_SETINFO
        || id == commands::AUTH
        || id == commands::HELLO
        || id == commands::SELECT
        || id == commands::RESET
}

fn is(req: &Request, i: usize, word: &[u8]) -> bool {
    req.arg(i)
        .is_some_and(|(b, len)| len == word.len() as u64 && b.eq_ignore_ascii_case(word))
}

fn item(out: &mut Fifo<u8>, tag: u8, v: &[u8]) -> usize {
    let v = v.get(..IDENT_BYTES).unwrap_or(v);
    out.push(tag);
    out.push(u8::try_from(v.len()).unwrap_or(0));
    out.extend(v);
    2 + v.len()
}

/// Appends the identity change `req` asks for to `out`; returns the bytes appended (0: none).
pub(super) fn encode(id: CommandId, req: &Request, out: &mut Fifo<u8>) -> u16 {
    if !concerned(id) {
        return 0;
    }
    let argc = req.args.len();
    let mut n = 0;
    match id {
        commands::CLIENT_SETNAME if req.argc == 3 => {
            if let Some((v, _)) = req.arg(2) {
                n += item(out, NAME, v);
            }
        }
        commands::AUTH if req.argc == 2 => n += item(out, USER, b"default"),
        // The user only: the password (argument 2) is never copied.
        commands::AUTH if req.argc == 3 => {
            if let Some((v, _)) = req.arg(1) {
                n += item(out, USER, v);
            }
        }
        commands::SELECT if req.argc == 2 => {
            if let Some((v, _)) = req.arg(1) {
                n += item(out, DB, v);
            }
        }
        commands::RESET => n += item(out, RESET, b""),
        commands::HELLO => {
            n += item(out, HELLO, b"");
            // HELLO [protover [AUTH user pass] [SETNAME name]]
            let mut i = 2;
            while i < argc {
                if is(req, i, b"auth") {
                    if let Some((v, _)) = req.arg(i + 1) {
                        n += item(out, USER, v);
                    }
                    i += 3;
                } else if is(req, i, b"setname") {
                    if let Some((v, _)) = req.arg(i + 1) {
                        n += item(out, NAME, v);
                    }
                    i += 2;
                } else {
                    break;
                }
            }
        }
        // CLIENT SETINFO is Redis 7.2+; an older command table does not know it, and an older
        // server rejects it, but the client told us who it is all the same.
        _ if req.argc == 4 && is(req, 0, b"client") && is(req, 1, b"setinfo") => {
            let tag = if is(req, 2, b"lib-name") {
                LIB_NAME
            } else if is(req, 2, b"lib-ver") {
                LIB_VER
            } else {
                return 0;
            };
            if let Some((v, _)) = req.arg(3) {
                n += item(out, tag, v);
            }
        }
        _ => {}
    }
    u16::try_from(n).unwrap_or(0)
}

/// Applies an encoded change once the command's outcome is known. Returns whether a field the
/// metrics label is chosen from changed.
pub(super) fn apply(
    ident: &mut Identity,
    change: &[u8],
    status: Status,
    reply: Option<&ReplySummary<'_>>,
) -> bool {
    let accepted = status == Status::Ok;
    let mut label = false;
    let mut rest = change;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let (v, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        match *tag {
            LIB_NAME => {
                ident.lib_name = Some(ident_value(v));
                label = true;
            }
            LIB_VER => ident.lib_ver = Some(ident_value(v)),
            _ if !accepted => {}
            NAME => {
                ident.client_name = (!v.is_empty()).then(|| ident_value(v));
                label = true;
            }
            USER => ident.user = Some(ident_value(v)),
            DB => ident.db = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()),
            RESET => {
                // Redis's clearClientConnectionState: db 0, RESP2, no name, the default user.
                label |= ident.client_name.take().is_some();
                ident.db = Some(0);
                ident.resp = Some(2);
                ident.user = Some(Box::from(&b"default"[..]));
            }
            HELLO => match reply.map(|r| r.kind) {
                Some(Kind::Map) => ident.resp = Some(3),
                Some(Kind::Array) => ident.resp = Some(2),
                _ => {}
            },
            _ => {}
        }
    }
    label
}

#[cfg(test)]
mod tests {
    use crate::conn::{ConnMeta, Identity};
    use crate::record::{CommandRecord, Sink};
    use crate::session::{Session, SessionLimits};

    /// Each command's name and the identity its record carried.
    #[derive(Default)]
    struct Seen(Vec<(String, Identity)>);

    impl Sink for Seen {
        fn command(&mut self, r: &CommandRecord<'_>) {
            let name = String::from_utf8_lossy(r.name).into_owned();
            self.0.push((name, r.conn.ident.clone()));
        }
    }

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        v
    }

    /// Runs (request, reply) exchanges one after the other.
    fn run(mid_stream: bool, steps: &[(&[&str], &str)]) -> Vec<(String, Identity)> {
        let meta = ConnMeta::new(
            "127.0.0.1:50000".parse().unwrap(),
            "127.0.0.1:6379".parse().unwrap(),
        );
        let mut s = Session::new(meta, &SessionLimits::default(), mid_stream);
        let mut seen = Seen::default();
        let mut ts = 1;
        for (req, rep) in steps {
            s.client_bytes(ts, &cmd(req), &mut seen);
            s.server_bytes(ts + 1, rep.as_bytes(), &mut seen);
            ts += 2;
        }
        seen.0
    }

    fn s(v: &Option<Box<[u8]>>) -> Option<&str> {
        v.as_deref().map(|b| std::str::from_utf8(b).unwrap())
    }

    #[test]
    fn setname_applies_to_later_commands_only() {
        let seen = run(
            false,
            &[
                (&["GET", "a"], "$-1\r\n"),
                (&["CLIENT", "SETNAME", "orders-api"], "+OK\r\n"),
                (&["GET", "a"], "$-1\r\n"),
                (
                    &["CLIENT", "SETNAME", "bad name"],
                    "-ERR Client names cannot contain spaces\r\n",
                ),
                (&["GET", "a"], "$-1\r\n"),
                (&["CLIENT", "SETNAME", ""], "+OK\r\n"),
                (&["GET", "a"], "$-1\r\n"),
            ],
        );
        let names: Vec<_> = seen.iter().map(|(_, i)| s(&i.client_name)).collect();
        assert_eq!(
            names,
            [
                None,
                None,
                Some("orders-api"),
                Some("orders-api"),
                Some("orders-api"),
                Some("orders-api"),
                None
            ]
        );
        // From the start of the connection: default user, db 0, RESP2.
        let first = &seen[0].1;
        assert_eq!(
            (s(&first.user), first.db, first.resp),
            (Some("default"), Some(0), Some(2))
        );
    }

    #[test]
    fn hello_auth_setname() {
        let hello = "%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        let seen = run(
            false,
            &[
                (
                    &["HELLO", "3", "AUTH", "alice", "s3cret", "SETNAME", "worker"],
                    hello,
                ),
                (&["PING"], "+PONG\r\n"),
                (
                    &["HELLO", "3", "AUTH", "bob", "wrong"],
                    "-WRONGPASS invalid\r\n",
                ),
                (&["PING"], "+PONG\r\n"),
            ],
        );
        let (_, hello_line) = &seen[0];
        assert_eq!(
            (s(&hello_line.user), hello_line.resp),
            (Some("default"), Some(2))
        );
        let (_, after) = &seen[1];
        assert_eq!(s(&after.client_name), Some("worker"));
        assert_eq!((s(&after.user), after.resp), (Some("alice"), Some(3)));
        assert_eq!(seen[3].1, *after, "a rejected HELLO changes nothing");
        // The password is never kept.
        assert!(!format!("{seen:?}").contains("s3cret"));
    }

    #[test]
    fn auth_select_setinfo_reset() {
        let seen = run(
            false,
            &[
                (&["AUTH", "app", "pw"], "+OK\r\n"),
                (&["SELECT", "3"], "+OK\r\n"),
                (&["SELECT", "99"], "-ERR DB index is out of range\r\n"),
                // Redis 7.0 rejects SETINFO; the library is taken from the request anyway.
                (
                    &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
                    "-ERR unknown subcommand\r\n",
                ),
                (
                    &["CLIENT", "SETINFO", "LIB-VER", "5.0.8"],
                    "-ERR unknown subcommand\r\n",
                ),
                (&["CLIENT", "SETNAME", "n"], "+OK\r\n"),
                (&["GET", "k"], "$-1\r\n"),
                (&["RESET"], "+RESET\r\n"),
                (&["GET", "k"], "$-1\r\n"),
                (&["AUTH", "pw"], "+OK\r\n"),
                (&["GET", "k"], "$-1\r\n"),
            ],
        );
        let g = &seen[6].1;
        assert_eq!(
            (s(&g.user), g.db, s(&g.client_name)),
            (Some("app"), Some(3), Some("n"))
        );
        assert_eq!(
            (s(&g.lib_name), s(&g.lib_ver)),
            (Some("redis-py"), Some("5.0.8"))
        );
        assert_eq!(seen[3].1.db, Some(3), "a failed SELECT keeps the db");
        let r = &seen[8].1;
        assert_eq!(
            (s(&r.user), r.db, r.client_name.as_deref()),
            (Some("default"), Some(0), None)
        );
        assert_eq!(s(&r.lib_name), Some("redis-py"), "RESET keeps the library");
        assert_eq!(s(&seen[10].1.user), Some("default"));
        assert!(!format!("{seen:?}").contains("pw\""));
    }

    #[test]
    fn mid_stream_start_knows_nothing_until_told() {
        let seen = run(
            true,
            &[
                (&["GET", "a"], "$-1\r\n"),
                (&["SELECT", "2"], "+OK\r\n"),
                (&["GET", "a"], "$-1\r\n"),
            ],
        );
        assert_eq!(seen[0].1, Identity::default());
        let i = &seen[2].1;
        assert_eq!((i.db, i.user.as_deref(), i.resp), (Some(2), None, None));
    }

    #[test]
    fn names_are_bounded() {
        let long = "x".repeat(1000);
        let seen = run(
            false,
            &[
                (&["CLIENT", "SETNAME", &long], "+OK\r\n"),
                (&["GET", "a"], "$-1\r\n"),
            ],
        );
        assert_eq!(seen[1].1.client_name.as_deref().map(<[u8]>::len), Some(64));
    }

    #[test]
    fn setname_inside_multi_applies_at_exec() {
        let seen = run(
            false,
            &[
                (&["MULTI"], "+OK\r\n"),
                (&["CLIENT", "SETNAME", "tx"], "+QUEUED\r\n"),
                (&["GET", "a"], "+QUEUED\r\n"),
                (&["EXEC"], "*2\r\n+OK\r\n$-1\r\n"),
                (&["GET", "a"], "$-1\r\n"),
            ],
        );
        let names: Vec<_> = seen
            .iter()
            .map(|(n, i)| (n.as_str(), s(&i.client_name)))
            .collect();
        assert_eq!(
            names,
            [
                ("MULTI", None),
                ("CLIENT SETNAME", None),
                ("GET", Some("tx")),
                ("EXEC", Some("tx")),
                ("GET", Some("tx"))
            ]
        );
    }
}
