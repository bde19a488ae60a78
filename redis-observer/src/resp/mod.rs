//! Streaming RESP2/RESP3 and inline decoding.
//!
//! Two incremental decoders, one per direction of a connection. Both take bytes as they come
//! (any segmentation), keep only bounded prefixes of values, skip payload bytes they do not keep
//! (so a 512 MB bulk string costs no memory), accept "N bytes missing" from the reassembly, and
//! resynchronise after garbage or an unbridgeable gap. Neither allocates per frame once warm.

mod inline;
mod reply;
mod request;
mod scan;
mod types;

pub use inline::split_inline;
pub use reply::ReplyDecoder;
pub use request::RequestDecoder;
pub use types::*;
