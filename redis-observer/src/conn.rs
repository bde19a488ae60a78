//! One connection's identity, shared by every record the connection produces.
//!
//! A [`ConnMeta`] is created once, when the pipeline first sees a connection, and every command,
//! push and notice of that connection refers to it. A fact about a connection (where it was seen,
//! and later who is calling) is added here once and reaches every output without touching the
//! stages in between.

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
}

impl ConnMeta {
    #[must_use]
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        ConnMeta {
            client,
            server,
            iface: None,
        }
    }

    #[must_use]
    pub fn with_iface(mut self, iface: Option<Arc<str>>) -> Self {
        self.iface = iface;
        self
    }
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
