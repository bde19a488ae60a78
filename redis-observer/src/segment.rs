//! The unit every packet source (live capture, pcap replay) hands to the pipeline.

use std::net::SocketAddr;

/// Some captured bytes of one TCP segment, in the direction `src` → `dst`.
///
/// A segment may arrive as several `Segment`s (the kernel cuts large ones into chunks); each
/// carries the sequence number of its own first byte.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Nanoseconds since the Unix epoch (kernel time converted, or the capture's timestamp).
    pub ts_ns: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP sequence number of `data[0]` (of the SYN itself for a SYN).
    pub seq: u32,
    /// TCP flags (`redis_ebpf_common::TCP_*`).
    pub flags: u8,
    /// Acknowledgement number (meaningful with the ACK flag): the peer has received every byte
    /// of the opposite direction before it.
    pub ack: u32,
    /// Captured payload bytes.
    pub data: &'a [u8],
    /// Payload bytes that follow `data` in this segment but were not captured (capture limit,
    /// pcap snaplen). The stream positions are known; the bytes are not.
    pub missing: u32,
    /// What the source knows about where it was captured (its interface), carried whole to
    /// the connection's [`ConnMeta`](crate::conn::ConnMeta).
    pub capture: &'a std::sync::Arc<crate::conn::Capture>,
}
