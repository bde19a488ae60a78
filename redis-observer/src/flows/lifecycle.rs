//! TCP open and close of one connection, from the flags of its segments.

use redis_ebpf_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use crate::record::Dir;

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN.
    Fin,
    /// Either side sent RST.
    Rst,
}

/// What a segment's flags did to a connection (see [`Lifecycle::observe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Nothing,
    /// The connection is over: flush both streams and remove the flow. Reported once.
    Closed(CloseReason),
    /// A client SYN opened a new connection on this 4-tuple while the old one was never seen to
    /// close: end the old one (flush, count as closed), reset its streams, then handle this SYN.
    Reopened,
}

/// TCP open/close tracking of one connection, from the flags of its segments.
///
/// Closed when both sides have sent FIN, or either RST. It does not wait for data still in
/// flight before a FIN (reordered): on `lo` there is none, elsewhere it is rare, and closing
/// promptly matters more for the command log; the streams' `flush` reports anything held.
///
/// With a SYN, the pipeline sets the stream start: `set_isn(seq + 1)` on the client stream for
/// a SYN, on the server stream for a SYN-ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    bits: u8,
    client_isn: u32,
}

const SEEN: u8 = 1;
const SYN_CLIENT: u8 = 2;
const SYN_SERVER: u8 = 4;
const FIN_CLIENT: u8 = 8;
const FIN_SERVER: u8 = 16;
const CLOSED: u8 = 32;

impl Lifecycle {
    pub fn new() -> Self {
        Lifecycle::default()
    }

    /// Updates the state with one segment's flags (`dir` from the flow lookup, `seq` the
    /// segment's sequence number). Call it after the segment's payload went to the stream: a FIN
    /// may carry the last bytes.
    pub fn observe(&mut self, dir: Dir, flags: u8, seq: u32) -> Transition {
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if dir == Dir::Request && syn && !ack {
            // A second SYN is a retransmission if it has the same ISN; otherwise (or if the
            // connection was picked up mid-stream) the client reused the 4-tuple.
            let seen_before = self.bits & SEEN != 0;
            let same_syn = self.bits & SYN_CLIENT != 0 && self.client_isn == seq;
            let reopened = seen_before && !same_syn;
            if reopened || !seen_before {
                *self = Lifecycle {
                    bits: SEEN | SYN_CLIENT,
                    client_isn: seq,
                };
            }
            return if reopened {
                Transition::Reopened
            } else {
                Transition::Nothing
            };
        }
        self.bits |= SEEN;
        if self.bits & CLOSED != 0 {
            return Transition::Nothing;
        }
        if syn && ack && dir == Dir::Reply {
            self.bits |= SYN_SERVER;
        }
        if flags & TCP_RST != 0 {
            self.bits |= CLOSED;
            return Transition::Closed(CloseReason::Rst);
        }
        if flags & TCP_FIN != 0 {
            self.bits |= match dir {
                Dir::Request => FIN_CLIENT,
                Dir::Reply => FIN_SERVER,
            };
            if self.bits & (FIN_CLIENT | FIN_SERVER) == FIN_CLIENT | FIN_SERVER {
                self.bits |= CLOSED;
                return Transition::Closed(CloseReason::Fin);
            }
        }
        Transition::Nothing
    }

    pub fn is_closed(&self) -> bool {
        self.bits & CLOSED != 0
    }

    /// The client's SYN was seen: the request stream starts at a frame boundary.
    pub fn saw_client_syn(&self) -> bool {
        self.bits & SYN_CLIENT != 0
    }

    /// The server's SYN-ACK was seen: the reply stream starts at a frame boundary.
    pub fn saw_server_syn(&self) -> bool {
        self.bits & SYN_SERVER != 0
    }

    /// `dir`'s side has sent FIN.
    pub fn fin_seen(&self, dir: Dir) -> bool {
        let bit = match dir {
            Dir::Request => FIN_CLIENT,
            Dir::Reply => FIN_SERVER,
        };
        self.bits & bit != 0
    }
}
