//! The watched ports, and which side of a connection is the server.

use std::net::SocketAddr;

use crate::record::Dir;

/// Ports the observer watches (the Redis servers' ports).
#[derive(Clone)]
pub struct PortSet {
    /// One bit per port: O(1) lookups for any number of ports, 8 KiB.
    bits: Box<[u64]>,
}

impl PortSet {
    pub fn new() -> Self {
        PortSet {
            bits: vec![0u64; 1 << 10].into_boxed_slice(),
        }
    }

    pub fn insert(&mut self, port: u16) {
        if let Some(w) = self.bits.get_mut(usize::from(port >> 6)) {
            *w |= 1 << (port & 63);
        }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits
            .get(usize::from(port >> 6))
            .is_some_and(|w| w & (1 << (port & 63)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl FromIterator<u16> for PortSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut set = PortSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports = (0..=u16::MAX).filter(|&p| self.contains(p));
        f.debug_set().entries(ports).finish()
    }
}

/// A connection, client side first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Hashed as three words (both addresses, both ports) instead of field by field: the key is
/// hashed for every segment, and the derived impl fed the hasher a dozen small pieces. Equal keys
/// still hash equally (IPv6 flow info and scope are left out of the hash, not of `Eq`).
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        fn ip(a: &SocketAddr) -> u128 {
            match a {
                SocketAddr::V4(v) => u128::from(u32::from(*v.ip())),
                SocketAddr::V6(v) => u128::from(*v.ip()),
            }
        }
        h.write_u128(ip(&self.client));
        h.write_u128(ip(&self.server));
        h.write_u32(u32::from(self.client.port()) << 16 | u32::from(self.server.port()));
    }
}

/// The connection a segment `src` → `dst` belongs to, and its direction.
///
/// The server is the side whose port is watched. If both or neither are, the side with the lower
/// port is the server (the ephemeral port is almost always the higher); on equal ports, the lower
/// address. The rule only looks at the pair, so both directions of a connection agree.
#[inline]
pub fn orient(ports: &PortSet, src: SocketAddr, dst: SocketAddr) -> (FlowKey, Dir) {
    let src_is_server = match (ports.contains(src.port()), ports.contains(dst.port())) {
        (true, false) => true,
        (false, true) => false,
        _ => (src.port(), src) < (dst.port(), dst),
    };
    if src_is_server {
        (
            FlowKey {
                client: dst,
                server: src,
            },
            Dir::Reply,
        )
    } else {
        (
            FlowKey {
                client: src,
                server: dst,
            },
            Dir::Request,
        )
    }
}
