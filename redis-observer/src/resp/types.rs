//! Data types the RESP decoders produce. Bounded by construction: every `Vec` here is reused by
//! its decoder and never grows past the limits in [`Limits`].

/// RESP value kinds. `as_str` gives the contract's `reply_type` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `+`
    Simple = 0,
    /// `-` and RESP3 blob errors `!`
    Error = 1,
    /// `:`
    Integer = 2,
    /// `$`
    Bulk = 3,
    /// `$-1`, `*-1` (RESP2 nulls) and RESP3 `_`
    Null = 4,
    /// `*`
    Array = 5,
    /// `%`
    Map = 6,
    /// `~`
    Set = 7,
    /// `,`
    Double = 8,
    /// `#`
    Boolean = 9,
    /// `(`
    BigNumber = 10,
    /// `=`
    Verbatim = 11,
    /// `>`
    Push = 12,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Simple => "simple",
            Kind::Error => "error",
            Kind::Integer => "integer",
            Kind::Bulk => "bulk",
            Kind::Null => "null",
            Kind::Array => "array",
            Kind::Map => "map",
            Kind::Set => "set",
            Kind::Double => "double",
            Kind::Boolean => "boolean",
            Kind::BigNumber => "bignum",
            Kind::Verbatim => "verbatim",
            Kind::Push => "push",
        }
    }

    pub fn is_aggregate(self) -> bool {
        matches!(self, Kind::Array | Kind::Map | Kind::Set | Kind::Push)
    }
}

/// Size limits and how much of each value is kept for display.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest header or simple line (`+`, `-`, `:`, `$N`, ...) and longest inline command line.
    /// Redis closes a connection whose inline line exceeds 64 KiB. Values under 32 count as 32.
    pub max_line: usize,
    /// Largest multibulk count accepted in a request (Redis 7.0: `INT_MAX`; see `Default`).
    pub max_request_args: u64,
    /// Largest bulk length accepted (Redis' default proto-max-bulk-len: 512 MB).
    pub max_bulk: u64,
    /// Deepest nesting of aggregates in a reply (attributes included).
    pub max_depth: usize,
    /// Arguments of a request kept (prefixes) for display and key extraction.
    pub keep_args: usize,
    /// Bytes kept of each kept argument.
    pub keep_arg_bytes: usize,
    /// Bytes kept of a scalar reply's text (and of each kept child's text).
    pub keep_reply_bytes: usize,
    /// Direct children of an aggregate reply summarised in [`Reply::children`].
    pub keep_children: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            // Redis 7.0's processMultibulkBuffer rejects only counts above INT_MAX (the
            // 1024 * 1024 limit is from older versions). Checked against 7.0.15: `*1048577` gets
            // no error, an MSET of 1,048,578 arguments runs, `*3000000000` is a protocol error.
            // With the old bound the decoder declared such a command a protocol error, stopped
            // counting the connection, and lost commands Redis ran. The decoder keeps only the
            // first `keep_args` arguments, so a large count costs no memory.
            max_request_args: i32::MAX as u64,
            max_bulk: 512 * 1024 * 1024,
            max_depth: 128,
            keep_args: 32,
            keep_arg_bytes: 128,
            keep_reply_bytes: 128,
            keep_children: 4096,
        }
    }
}

/// One argument of a request: its kept prefix is `Request::buf[start..start + kept]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSpan {
    pub start: u32,
    pub kept: u32,
    /// Full length on the wire (the bulk length), which may exceed `kept`.
    pub len: u64,
}

/// A decoded client command (multibulk or inline), bounded.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Number of arguments including the command name (may exceed `args.len()`).
    pub argc: u64,
    /// The first `Limits::keep_args` arguments.
    pub args: Vec<ArgSpan>,
    /// Kept argument prefixes.
    pub buf: Vec<u8>,
    /// Sent as an inline command.
    pub inline: bool,
    /// Bytes of this command on the wire (including bytes that were missing from the capture).
    pub wire_len: u64,
    /// Timestamps (ns) of the data that carried the first and the last byte.
    pub first_ts: u64,
    pub last_ts: u64,
    /// Some of this command's bytes were not captured (inside bulk payloads only; the framing was
    /// intact).
    pub truncated: bool,
}

impl Request {
    /// Kept prefix and full length of argument `i` (0 = command name).
    pub fn arg(&self, i: usize) -> Option<(&[u8], u64)> {
        let a = self.args.get(i)?;
        let start = a.start as usize;
        Some((&self.buf[start..start + a.kept as usize], a.len))
    }
}

/// One direct child of an aggregate reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    pub kind: Kind,
    /// Element count of an aggregate child, text length of a scalar, -1 for null.
    pub len: i64,
    /// Kept text of a scalar child: `Reply::child_text[start..start + kept]`.
    pub start: u32,
    pub kept: u32,
}

/// A decoded top-level reply or push, bounded. Attributes (`|`) are skipped, never reported.
#[derive(Clone, Debug)]
pub struct Reply {
    pub kind: Kind,
    /// Element count for aggregates (pairs for maps), text length for scalars, -1 for null.
    pub len: i64,
    /// Kept text of a scalar (the string, the number as written, the error line, `t`/`f`).
    /// For verbatim strings, without the `txt:` prefix.
    pub text: Vec<u8>,
    /// Summaries of the first `Limits::keep_children` direct children (maps: keys and values
    /// alternate).
    pub children: Vec<Child>,
    pub child_text: Vec<u8>,
    /// Bytes on the wire, including any attributes before it and missing bytes.
    pub wire_len: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// Some bytes inside bulk payloads were not captured.
    pub truncated: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            kind: Kind::Null,
            len: -1,
            text: Vec::new(),
            children: Vec::new(),
            child_text: Vec::new(),
            wire_len: 0,
            first_ts: 0,
            last_ts: 0,
            truncated: false,
        }
    }
}

impl Reply {
    /// Kept text of child `i`, for scalar children.
    pub fn child_text(&self, i: usize) -> Option<&[u8]> {
        let c = self.children.get(i)?;
        let start = c.start as usize;
        Some(&self.child_text[start..start + c.kept as usize])
    }
}

/// Why a decoder gave up on the current frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DesyncReason {
    /// The stream does not look like RESP at all (first bytes of a connection).
    NotResp = 0,
    /// A byte that cannot start or continue a frame.
    BadByte = 1,
    /// A header or line longer than `max_line`.
    LineTooLong = 2,
    /// An absurd length or count.
    BadLength = 3,
    /// Nesting deeper than `max_depth`.
    TooDeep = 4,
    /// Bytes missing from the capture where the framing needed them.
    Gap = 5,
}

impl DesyncReason {
    pub const ALL: [DesyncReason; 6] = [
        DesyncReason::NotResp,
        DesyncReason::BadByte,
        DesyncReason::LineTooLong,
        DesyncReason::BadLength,
        DesyncReason::TooDeep,
        DesyncReason::Gap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DesyncReason::NotResp => "not_resp",
            DesyncReason::BadByte => "bad_byte",
            DesyncReason::LineTooLong => "line_too_long",
            DesyncReason::BadLength => "bad_length",
            DesyncReason::TooDeep => "too_deep",
            DesyncReason::Gap => "gap",
        }
    }
}

/// What the server does with a request stream error (Redis replies `-ERR Protocol error: ...` and
/// closes the connection, so nothing after it on that connection is a command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolError {
    UnbalancedQuotes,
    InlineTooLong,
    BadMultibulkLength,
    BadBulkLength,
    /// The byte found where a bulk string's `$` was expected.
    ExpectedDollar(u8),
    /// A `*N` line running past 64 KiB without its `\r`.
    TooBigMbulkCount,
    /// A `$N` line running past 64 KiB without its `\r`.
    TooBigBulkCount,
    /// More than 10 arguments from a client not yet authenticated on a server with a password
    /// (known from the server's reply only).
    UnauthMultibulkLength,
    /// A bulk longer than 16 KiB from such a client (known from the server's reply only).
    UnauthBulkLength,
}

impl ProtocolError {
    pub const ALL: [ProtocolError; 9] = [
        ProtocolError::UnbalancedQuotes,
        ProtocolError::InlineTooLong,
        ProtocolError::BadMultibulkLength,
        ProtocolError::BadBulkLength,
        ProtocolError::ExpectedDollar(b'$'),
        ProtocolError::TooBigMbulkCount,
        ProtocolError::TooBigBulkCount,
        ProtocolError::UnauthMultibulkLength,
        ProtocolError::UnauthBulkLength,
    ];

    /// Label value for `redis_observer_protocol_errors_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolError::UnbalancedQuotes => "unbalanced_quotes",
            ProtocolError::InlineTooLong => "too_big_inline_request",
            ProtocolError::BadMultibulkLength => "invalid_multibulk_length",
            ProtocolError::BadBulkLength => "invalid_bulk_length",
            ProtocolError::ExpectedDollar(_) => "expected_dollar",
            ProtocolError::TooBigMbulkCount => "too_big_mbulk_count",
            ProtocolError::TooBigBulkCount => "too_big_bulk_count",
            ProtocolError::UnauthMultibulkLength => "unauthenticated_multibulk_length",
            ProtocolError::UnauthBulkLength => "unauthenticated_bulk_length",
        }
    }

    /// Redis's reply text (networking.c), without the leading `-`; `buf` holds the one text
    /// that carries a byte of the request.
    pub fn text(self, buf: &mut [u8; 48]) -> &[u8] {
        let fixed: &'static [u8] = match self {
            ProtocolError::UnbalancedQuotes => b"ERR Protocol error: unbalanced quotes in request",
            ProtocolError::InlineTooLong => b"ERR Protocol error: too big inline request",
            ProtocolError::BadMultibulkLength => b"ERR Protocol error: invalid multibulk length",
            ProtocolError::BadBulkLength => b"ERR Protocol error: invalid bulk length",
            ProtocolError::TooBigMbulkCount => b"ERR Protocol error: too big mbulk count string",
            ProtocolError::TooBigBulkCount => b"ERR Protocol error: too big bulk count string",
            ProtocolError::UnauthMultibulkLength => {
                b"ERR Protocol error: unauthenticated multibulk length"
            }
            ProtocolError::UnauthBulkLength => b"ERR Protocol error: unauthenticated bulk length",
            ProtocolError::ExpectedDollar(got) => {
                let head = b"ERR Protocol error: expected '$', got '";
                buf[..head.len()].copy_from_slice(head);
                buf[head.len()] = got;
                buf[head.len() + 1] = b'\'';
                return &buf[..head.len() + 2];
            }
        };
        fixed
    }

    /// The error a server reply text announces, for the errors only the server can know (or
    /// that depend on how it read the stream).
    pub fn from_reply(text: &[u8]) -> Option<ProtocolError> {
        [
            ProtocolError::InlineTooLong,
            ProtocolError::UnauthMultibulkLength,
            ProtocolError::UnauthBulkLength,
        ]
        .into_iter()
        .find(|e| e.text(&mut [0; 48]) == text)
    }
}

/// Events from [`RequestDecoder::feed`](super::RequestDecoder::feed).
#[derive(Debug)]
pub enum RequestEvent<'a> {
    Command(&'a Request),
    /// An empty inline line, `*0` or `*-1`: no reply, but consumes a pending CLIENT REPLY SKIP.
    Empty,
    /// The server will answer with a protocol error and close the connection. The request holds
    /// what was read of the offending command (its name when it got that far).
    ProtocolError(ProtocolError, &'a Request),
    /// The decoder lost the frame boundary (gap, garbage) and is looking for the next one.
    Desync(DesyncReason),
}

/// Events from [`ReplyDecoder::feed`](super::ReplyDecoder::feed).
#[derive(Debug)]
pub enum ReplyEvent<'a> {
    Reply(&'a Reply),
    Desync(DesyncReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_error_texts() {
        let mut buf = [0u8; 48];
        assert_eq!(
            ProtocolError::ExpectedDollar(b':').text(&mut buf),
            b"ERR Protocol error: expected '$', got ':'"
        );
        for e in ProtocolError::ALL {
            let mut buf = [0u8; 48];
            assert!(e.text(&mut buf).starts_with(b"ERR Protocol error: "));
        }
        assert_eq!(
            ProtocolError::from_reply(b"ERR Protocol error: unauthenticated bulk length"),
            Some(ProtocolError::UnauthBulkLength)
        );
        assert_eq!(
            ProtocolError::from_reply(b"ERR Protocol error: invalid bulk length"),
            None
        );
    }
}
