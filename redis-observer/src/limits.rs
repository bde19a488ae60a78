//! How much of each command a record keeps and a log line shows: one struct, one set of defaults.
//!
//! The decoders keep a working prefix of each request and reply ([`RecordLimits::decoder`]
//! derives it from these), the session keeps what records carry, and the renderer shows it: all
//! three read the same numbers, so a cap set here is the cap a user sees. Lengths are bytes, counted
//! before escaping; a value cut short is shown with `…(+N bytes)`.

use crate::resp::Limits;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Arguments after the command name (and subcommand) a record keeps; the rest are counted
    /// (`…(+N more)`).
    pub args: usize,
    /// Bytes kept of each argument (and of each push element shown).
    pub arg_bytes: usize,
    /// Bytes kept of the key.
    pub key_bytes: usize,
    /// Bytes kept of a command name the table does not know (named as sent).
    pub name_bytes: usize,
    /// Bytes shown of a scalar reply.
    pub reply_bytes: usize,
    /// Bytes shown of an error reply.
    pub error_bytes: usize,
    /// Keys a record carries for the hot-key analytics (every key of the command, from the key
    /// specs, each cut to `key_bytes`); 0 (the default) when no output needs them, which costs
    /// nothing per command.
    pub keys: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            args: 16,
            arg_bytes: 64,
            key_bytes: 64,
            name_bytes: 32,
            reply_bytes: 96,
            error_bytes: 128,
            keys: 0,
        }
    }
}

/// Arguments the request decoder keeps beyond [`RecordLimits::args`]: the name, a subcommand,
/// and the keywords a key spec searches for (`XREAD … STREAMS key`) come before the shown ones.
const DECODER_EXTRA_ARGS: usize = 16;
/// Bytes the request decoder keeps of each argument at least: command names and subcommands,
/// the keywords of key specs and the parameter names the secret rules look at must be whole.
const DECODER_MIN_ARG_BYTES: usize = 128;

impl RecordLimits {
    /// `base` with the decoders' working prefixes set from these limits.
    #[must_use]
    pub fn decoder(&self, base: Limits) -> Limits {
        Limits {
            // MSET's keys are every other argument.
            keep_args: self.args.max(self.keys.saturating_mul(2)) + DECODER_EXTRA_ARGS,
            keep_arg_bytes: self
                .arg_bytes
                .max(self.key_bytes)
                .max(self.name_bytes)
                .max(DECODER_MIN_ARG_BYTES),
            keep_reply_bytes: self.reply_bytes.max(self.error_bytes),
            ..base
        }
    }
}
