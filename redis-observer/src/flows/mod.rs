//! Connections by 4-tuple: which side is the server, per-connection state with caps on count and
//! memory, eviction of the longest-idle flows, and the TCP open/close lifecycle.
//!
//! The map uses `ahash` with a per-process random seed: the 4-tuples come from the network, and a
//! fixed-seed hash (FxHash) would let a sender who can choose ports pile flows into one bucket.
//!
//! Idle order is kept in a min-heap of `(last activity, flow id, key)` that is cleaned lazily:
//! touching a flow only stores its new time in the map entry (no heap work per packet); when an
//! item reaches the top with an older time than its entry's, it is pushed back with the current
//! one. Items of removed flows are dropped when they surface, and the heap is rebuilt in place when
//! they outnumber live flows, so every operation is O(log n) amortised and memory stays O(flows).
//!
//! - [`ports`]: which side of a connection is the server ([`orient`]), and its key.
//! - [`table`]: the bounded table of connections and its idle order.
//! - [`lifecycle`]: TCP open and close, from the segments' flags.

mod lifecycle;
mod ports;
mod table;
#[cfg(test)]
mod tests;

pub use lifecycle::{CloseReason, Lifecycle, Transition};
pub use ports::{FlowKey, PortSet, orient};
pub use table::{FlowLimits, FlowRef, FlowState, FlowStats, FlowTable};
