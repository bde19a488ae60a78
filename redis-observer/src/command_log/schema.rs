//! The command log's line, as one serde type: what `tail` and the tests read back.
//!
//! The daemon renders lines by hand (see [`render`](super::render): no serde on the hot path);
//! the round-trip tests below hold the two together: every line the renderer writes parses as a
//! [`LogLine`] and serialises back to the same JSON object, field for field. A field added to the
//! log is added here and in the renderer, and nowhere else; a field from the capture side is
//! added to [`CaptureInfo`] only (flattened here, written from its serde form by the renderer).

use serde::{Deserialize, Serialize};

use crate::conn::CaptureInfo;

/// One line of the command log (`--log-format json`). Commands have `command` set; pushes and
/// notices have it `null` and a `status` of their own (`push`, `notice`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC with microseconds.
    pub ts: String,
    pub client: Option<String>,
    pub server: Option<String>,
    pub command: Option<String>,
    pub key: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub status: String,
    pub reply_type: Option<String>,
    pub reply: Option<String>,
    pub error: Option<String>,
    pub latency_us: Option<f64>,
    #[serde(default)]
    pub req_bytes: u64,
    #[serde(default)]
    pub resp_bytes: u64,
    /// Present (and true) only for commands run by EXEC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_transaction: bool,
    /// Present (and true) only for commands that can block (BLPOP, XREAD … BLOCK, WAIT, …).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
    /// Present (and true) only for requests the server refused with a protocol error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protocol_error: bool,
    /// A notice's sentence (notice lines only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// What the capture source knew about the connection (`iface`): its fields are the line's.
    #[serde(flatten)]
    pub capture: CaptureInfo,
    /// Identity the client announced (`CLIENT SETNAME`, `HELLO … SETNAME`).
    #[serde(default)]
    pub client_name: Option<String>,
    /// `"name version"` from `CLIENT SETINFO`.
    #[serde(default)]
    pub client_lib: Option<String>,
    /// ACL user (never a password).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub db: Option<u32>,
    #[serde(default)]
    pub resp: Option<u8>,
    /// The local process owning the client socket (live capture; null when not found).
    #[serde(default)]
    pub client_pid: Option<u32>,
    #[serde(default)]
    pub client_comm: Option<String>,
    #[serde(default)]
    pub client_container: Option<String>,
    #[serde(default)]
    pub server_pid: Option<u32>,
    #[serde(default)]
    pub server_comm: Option<String>,
    /// Kubernetes pod UID of the client process (from its cgroup).
    #[serde(default)]
    pub client_pod: Option<String>,
    /// The client process's cgroup v2 path.
    #[serde(default)]
    pub client_cgroup: Option<String>,
}

impl LogLine {
    /// A command line (not a push or notice).
    #[must_use]
    pub fn is_command(&self) -> bool {
        self.command.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::command_log::Format;
    use crate::command_log::{NoticeLine, Renderer};
    use crate::commands::CommandId;
    use crate::conn::ConnMeta;
    use crate::record::{CommandRecord, Notice, RecordArg, ReplySummary, Status};
    use crate::resp::{Kind, Reply};

    fn round_trip(line: &[u8]) -> LogLine {
        let text = std::str::from_utf8(line).unwrap().trim_end();
        let typed: LogLine = serde_json::from_str(text).unwrap();
        let raw: serde_json::Value = serde_json::from_str(text).unwrap();
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(raw, back, "the schema and the renderer disagree on {text}");
        typed
    }

    #[test]
    fn every_kind_of_line_round_trips() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut conn = ConnMeta::new(sa("10.0.0.7:53422"), sa("[::1]:6379"))
            .with_capture(crate::conn::Capture::new(CaptureInfo::on(Some("eth0"))));
        conn.ident = crate::conn::Identity {
            client_name: Some(Box::from(&b"orders\"api\n"[..])),
            lib_name: Some(Box::from(&b"redis-py"[..])),
            lib_ver: Some(Box::from(&b"5.0.8"[..])),
            user: Some(Box::from(&b"app"[..])),
            db: Some(3),
            ..crate::conn::Identity::fresh()
        };
        let args = [RecordArg {
            start: 0,
            kept: 3,
            len: 3,
            redacted: false,
        }];
        let mut rec = CommandRecord {
            ts_ns: 1_795_218_994_123_456_789,
            conn: &conn,
            command: CommandId(1),
            name: b"SET",
            key: Some(b"k\xff"),
            args: &args,
            keys: &[],
            arg_buf: b"bar",
            argc: 1,
            status: Status::Ok,
            reply: Some(ReplySummary {
                kind: Kind::Simple,
                len: 2,
                text: b"OK",
                redacted: false,
            }),
            latency_ns: Some(1500),
            req_bytes: 30,
            resp_bytes: 5,
            in_transaction: true,
            blocking: true,
            protocol_error: None,
        };
        let mut r = Renderer::new(Format::Json);
        let mut out = Vec::new();
        r.command(&rec, &mut out);
        let l = round_trip(&out);
        assert_eq!(l.command.as_deref(), Some("SET"));
        assert_eq!(l.capture.iface.as_deref(), Some("eth0"));
        assert_eq!(l.client_name.as_deref(), Some("orders\"api\n"));
        assert_eq!(l.client_lib.as_deref(), Some("redis-py 5.0.8"));
        assert_eq!(
            (l.user.as_deref(), l.db, l.resp),
            (Some("app"), Some(3), Some(2))
        );
        assert_eq!((l.client_pid, l.client_comm.as_deref()), (None, None));
        assert_eq!(l.server.as_deref(), Some("[::1]:6379"));
        assert_eq!(l.key.as_deref(), Some("k\\xff"));
        assert!(l.in_transaction && l.is_command());
        assert!(l.blocking && !l.protocol_error);
        rec.status = Status::Error;
        rec.in_transaction = false;
        rec.blocking = false;
        rec.protocol_error = Some(crate::resp::ProtocolError::UnbalancedQuotes);
        rec.latency_ns = None;
        rec.reply = Some(ReplySummary {
            kind: Kind::Error,
            len: 7,
            text: b"ERR bad",
            redacted: false,
        });
        out.clear();
        r.command(&rec, &mut out);
        let l = round_trip(&out);
        assert_eq!((l.error.as_deref(), l.reply), (Some("ERR bad"), None));
        assert!(!l.blocking && l.protocol_error);
        out.clear();
        r.push(1, &conn, &Reply::default(), &mut out);
        assert_eq!(round_trip(&out).status, "push");
        out.clear();
        r.notice(
            1,
            Some(&conn),
            NoticeLine::Pipeline(&Notice::OrphanReply),
            &mut out,
        );
        let l = round_trip(&out);
        assert_eq!(l.status, "notice");
        assert!(l.notice.is_some() && !l.is_command());
        out.clear();
        r.notice(1, None, NoticeLine::Dropped(3), &mut out);
        assert_eq!(round_trip(&out).client, None);
    }
}
