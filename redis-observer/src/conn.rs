//! One connection's identity, shared by every record the connection produces.
//!
//! A [`ConnMeta`] is created once, when the pipeline first sees a connection, and every command,
//! push and notice of that connection refers to it. A fact about a connection (where it was seen,
//! and later who is calling) is added here once and reaches every output without touching the
//! stages in between.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is talking to whom, and where the observer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnMeta {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4 by the outputs).
    pub client: SocketAddr,
    /// The Redis server's address (the watched port's side).
    pub server: SocketAddr,
    /// Name of the interface the connection's segments were captured on; `None` when the source
    /// does not say (a pcap file without interface names).
    pub iface: Option<Arc<str>>,
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
            iface: None,
            ident: Identity::default(),
            client_proc: None,
            server_proc: None,
            top_slot: Cell::new(0),
        }
    }

    #[must_use]
    pub fn with_iface(mut self, iface: Option<Arc<str>>) -> Self {
        self.iface = iface;
        self
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

/// Interface names by the number their source gives them (kernel ifindex live, pcapng
/// interface id in replay). Small: at most [`IfaceNames::MAX`] entries.
#[derive(Clone, Debug, Default)]
pub struct IfaceNames {
    names: Vec<(u32, Arc<str>)>,
}

impl IfaceNames {
    /// More interfaces than any host watches; a hostile pcapng cannot grow the table past it.
    pub const MAX: usize = 4096;

    #[must_use]
    pub const fn new() -> Self {
        IfaceNames { names: Vec::new() }
    }

    /// Records (or renames) interface `index`.
    pub fn set(&mut self, index: u32, name: &str) {
        if let Some(slot) = self.names.iter_mut().find(|(i, _)| *i == index) {
            if &*slot.1 != name {
                slot.1 = Arc::from(name);
            }
        } else if self.names.len() < Self::MAX {
            self.names.push((index, Arc::from(name)));
        }
    }

    /// The name of interface `index`, if known.
    #[must_use]
    pub fn get(&self, index: u32) -> Option<&Arc<str>> {
        self.names.iter().find(|(i, _)| *i == index).map(|(_, n)| n)
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
