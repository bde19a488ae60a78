//! One connection's identity, shared by every record the connection produces.
//!
//! A [`ConnMeta`] is created once, when the pipeline first sees a connection, and every command,
//! push and notice of that connection refers to it. A fact about a connection (where it was seen,
//! and later who is calling) is added here once and reaches every output without touching the
//! stages in between.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

/// Who is talking to whom, and where the observer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnMeta {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4 by the outputs).
    pub client: SocketAddr,
    /// The Redis server's address (the watched port's side).
    pub server: SocketAddr,
    /// What the packet source knows about where the connection was seen (its interface).
    pub capture: Arc<Capture>,
    /// Who the client says it is, learned from the protocol by the session; a change applies
    /// to the records produced after it.
    pub ident: Identity,
    /// The local process that owns the client socket (live capture only, set once per
    /// connection when its first request arrives; `None` when not found).
    pub client_proc: Option<Arc<Process>>,
    /// The local process that owns the server's listening socket.
    pub server_proc: Option<Arc<Process>>,
    /// Where the hot-key analytics last found this connection's client in their client table
    /// (`analytics::sketch::Slot`, 0: nowhere yet), so their per-command path neither hashes
    /// the address nor probes. Only the analytics read or set it.
    pub top_slot: Cell<u64>,
}

impl ConnMeta {
    #[must_use]
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        ConnMeta {
            client,
            server,
            capture: Capture::unknown().clone(),
            ident: Identity::default(),
            client_proc: None,
            server_proc: None,
            top_slot: Cell::new(0),
        }
    }

    #[must_use]
    pub fn with_capture(mut self, capture: Arc<Capture>) -> Self {
        self.capture = capture;
        self
    }
}

/// What the packet source knows about where a connection was seen: every field is written on
/// every log line of the connection (after the record's own fields, in this order, `null` when
/// unknown), and read back by [`LogLine`](crate::command_log::LogLine), which flattens this
/// struct. A new fact from the capture side is a field here, filled where the sources describe
/// an interface ([`IfaceNames::set`]) or by the source that knows it; the segments, the
/// pipeline, the renderer and the log schema carry it without change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// Name of the interface the connection's segments were captured on; `None` when the source
    /// does not say (a pcap file without interface names).
    #[serde(default)]
    pub iface: Option<Arc<str>>,
}

impl CaptureInfo {
    /// Seen on interface `name` (if named), nothing else known.
    #[must_use]
    #[allow(clippy::needless_update)] // Fields added later take their defaults.
    pub fn on(name: Option<&str>) -> Self {
        CaptureInfo {
            iface: name.map(Arc::from),
            ..CaptureInfo::default()
        }
    }
}

/// A [`CaptureInfo`] with its log fields rendered once: the sources hand one per interface to
/// every [`Segment`](crate::segment::Segment), and each connection keeps the one it was first
/// seen with, so the per-line cost of its fields is one copy of bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Capture {
    info: CaptureInfo,
    /// `,"iface":"lo"` (the fields of `info` as the log writes them, each after a comma).
    json: Box<[u8]>,
}

impl Capture {
    #[must_use]
    pub fn new(info: CaptureInfo) -> Arc<Self> {
        let json = crate::command_log::capture_fields(&info).into_boxed_slice();
        Arc::new(Capture { info, json })
    }

    /// Nothing known (every field `null`): what a source without interface names gives.
    #[must_use]
    pub fn unknown() -> &'static Arc<Capture> {
        static UNKNOWN: LazyLock<Arc<Capture>> =
            LazyLock::new(|| Capture::new(CaptureInfo::default()));
        &UNKNOWN
    }

    #[must_use]
    pub fn info(&self) -> &CaptureInfo {
        &self.info
    }

    /// The fields as the log line writes them: `,"iface":"lo"` (empty were there none).
    #[must_use]
    pub fn json_fields(&self) -> &[u8] {
        &self.json
    }
}

/// A process on this host at one end of a connection (see `docs/contract.md`, process
/// attribution).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Process {
    /// Process id in the host's (initial) PID namespace.
    pub pid: u32,
    /// Command name (at most 15 bytes, as the kernel keeps it).
    pub comm: Box<str>,
    /// Its cgroup v2 path, when known.
    pub cgroup: Option<Box<str>>,
    /// Container (`docker://ID`, `containerd://ID`, `cri-o://ID`, `podman://ID`, or a bare ID
    /// when the runtime is not named) or else systemd unit, parsed from the cgroup path.
    pub container: Option<Box<str>>,
    /// Kubernetes pod UID, parsed from the cgroup path.
    pub pod: Option<Box<str>>,
}

/// What is known about each interface ([`Capture`]) by the number its source gives it (kernel
/// ifindex live, pcapng interface id in replay). Small: at most [`IfaceNames::MAX`] entries.
#[derive(Clone, Debug, Default)]
pub struct IfaceNames {
    names: Vec<(u32, Arc<Capture>)>,
}

impl IfaceNames {
    /// More interfaces than any host watches; a hostile pcapng cannot grow the table past it.
    pub const MAX: usize = 4096;

    #[must_use]
    pub const fn new() -> Self {
        IfaceNames { names: Vec::new() }
    }

    /// Records (or renames) interface `index`: where both sources describe an interface, so
    /// a fact about the interface that both know is filled here.
    pub fn set(&mut self, index: u32, name: &str) {
        self.describe(index, CaptureInfo::on(Some(name)));
    }

    /// Records (or replaces) what is known about interface `index`: a source that knows more
    /// than the name builds the [`CaptureInfo`] itself.
    pub fn describe(&mut self, index: u32, info: CaptureInfo) {
        let full = self.names.len() >= Self::MAX;
        let slot = self.names.iter_mut().find(|(i, _)| *i == index);
        if slot.as_ref().is_some_and(|(_, c)| c.info == info) || (slot.is_none() && full) {
            return;
        }
        let capture = Capture::new(info);
        match slot {
            Some(slot) => slot.1 = capture,
            None => self.names.push((index, capture)),
        }
    }

    /// What is known about interface `index` ([`Capture::unknown`] when nothing).
    #[must_use]
    pub fn get(&self, index: u32) -> &Arc<Capture> {
        self.names
            .iter()
            .find(|(i, _)| *i == index)
            .map_or(Capture::unknown(), |(_, c)| c)
    }
}

/// Bytes kept of a client name, library name or version, or user (longer values are cut).
pub const IDENT_BYTES: usize = 64;

/// The identity a client announces in the protocol (see `docs/contract.md`). Every field is
/// `None` when unknown (a connection picked up mid-stream, before the command that tells).
/// Values are raw bytes, cut to [`IDENT_BYTES`]; outputs escape them as they escape arguments.
/// Passwords are never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `CLIENT SETNAME` / `HELLO … SETNAME` once accepted; cleared by an empty name or RESET.
    pub client_name: Option<Box<[u8]>>,
    /// `CLIENT SETINFO LIB-NAME`, as sent (the server may be too old to accept it).
    pub lib_name: Option<Box<[u8]>>,
    /// `CLIENT SETINFO LIB-VER`, as sent.
    pub lib_ver: Option<Box<[u8]>>,
    /// The ACL user of the last successful AUTH (`default` for a one-argument AUTH, or from the
    /// start of a connection that never authenticated).
    pub user: Option<Box<[u8]>>,
    /// The selected database.
    pub db: Option<u32>,
    /// The protocol version (2 or 3).
    pub resp: Option<u8>,
    /// The metrics' per-client label slot for this connection plus one (0: not resolved yet),
    /// reset when the fields it is chosen from change: the per-command path never looks it up.
    pub metrics_slot: Cell<u32>,
}

impl Identity {
    /// What a connection seen from its first byte is: user `default`, db 0, RESP2.
    #[must_use]
    pub fn fresh() -> Self {
        Identity {
            user: Some(Box::from(&b"default"[..])),
            db: Some(0),
            resp: Some(2),
            ..Identity::default()
        }
    }

    /// Forgets the metrics label slot: the next command resolves it again.
    pub fn label_changed(&self) {
        self.metrics_slot.set(0);
    }
}

/// `v` cut to [`IDENT_BYTES`], boxed (per connection, on the rare command that sets it).
#[must_use]
pub fn ident_value(v: &[u8]) -> Box<[u8]> {
    Box::from(v.get(..IDENT_BYTES).unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capture side's fields as every log line writes them (`docs/contract.md`), in order.
    #[test]
    fn capture_fields_as_logged() {
        let unknown = Capture::unknown().json_fields();
        assert_eq!(std::str::from_utf8(unknown), Ok(",\"iface\":null"));
        let mut names = IfaceNames::new();
        names.set(7, "eth\"0");
        assert_eq!(
            std::str::from_utf8(names.get(7).json_fields()),
            Ok(",\"iface\":\"eth\\\"0\"")
        );
        assert!(std::ptr::eq(names.get(8), Capture::unknown()));
    }

    #[test]
    fn interfaces_are_renamed_and_bounded() {
        let mut names = IfaceNames::new();
        names.set(1, "lo");
        let first = Arc::clone(names.get(1));
        names.set(1, "lo");
        assert!(Arc::ptr_eq(&first, names.get(1)), "same name: same Capture");
        names.set(1, "eth0");
        assert_eq!(names.get(1).info().iface.as_deref(), Some("eth0"));
        for i in 0..IfaceNames::MAX as u32 + 10 {
            names.set(100 + i, "x");
        }
        assert_eq!(names.names.len(), IfaceNames::MAX);
        assert_eq!(names.get(1).info(), &CaptureInfo::on(Some("eth0")));
    }
}
