//! TCP stream reassembly: one direction of a connection's bytes, back in order.
//!
//! [`Stream`] takes segments as they were seen (in order, duplicated, overlapping, reordered,
//! partly captured) and hands out the byte stream as [`StreamEvent`]s: runs of captured bytes and
//! runs of bytes known to exist but not seen. It never joins bytes across a hole: a hole is always
//! reported as [`StreamEvent::Missing`] at its position, so a decoder can skip inside a bulk
//! string or know it lost the frame boundary.
//!
//! Connection lifecycle (SYN, FIN, RST) lives in [`crate::flows`].

mod stream;

pub use stream::{Stream, StreamEvent, StreamLimits, StreamStats};
