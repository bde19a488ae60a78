//! The `error` label: the first word of an error reply, from a fixed set.

/// Error prefixes Redis (7.x, with cluster and modules' common ones) sends. Anything else is
/// [`OTHER`], so a server (or a script's `redis.error_reply`) cannot create label values.
pub const ERROR_CLASSES: [&str; 28] = [
    "ERR",
    "WRONGTYPE",
    "MOVED",
    "ASK",
    "NOAUTH",
    "NOPERM",
    "WRONGPASS",
    "EXECABORT",
    "BUSY",
    "BUSYKEY",
    "BUSYGROUP",
    "NOSCRIPT",
    "NOTBUSY",
    "UNKILLABLE",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "MISCONF",
    "NOREPLICAS",
    "OOM",
    "CROSSSLOT",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "UNBLOCKED",
    "NOGROUP",
    "NOPROTO",
    "NOTREADY",
    "INVALIDOBJ",
];

/// Label value for error replies whose first word is not in [`ERROR_CLASSES`].
pub const OTHER: &str = "OTHER";

/// Longest word in [`ERROR_CLASSES`]; a longer first word is `OTHER` without looking further.
const MAX_WORD: usize = 16;

/// Index into [`ERROR_CLASSES`] of the error text's first word (case-insensitive), or
/// `ERROR_CLASSES.len()` for `OTHER`.
pub fn error_class(text: &[u8]) -> usize {
    // Tolerate the RESP type byte if a caller passes the raw line.
    let text = text.strip_prefix(b"-").unwrap_or(text);
    let end = text
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(text.len());
    if end == 0 || end > MAX_WORD {
        return ERROR_CLASSES.len();
    }
    let mut word = [0u8; MAX_WORD];
    for (w, &b) in word.iter_mut().zip(text) {
        *w = b.to_ascii_uppercase();
    }
    let word = word.get(..end).unwrap_or(&[]);
    ERROR_CLASSES
        .iter()
        .position(|c| c.as_bytes() == word)
        .unwrap_or(ERROR_CLASSES.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(t: &str) -> &'static str {
        ERROR_CLASSES
            .get(error_class(t.as_bytes()))
            .copied()
            .unwrap_or(OTHER)
    }

    #[test]
    fn classes() {
        assert_eq!(class("ERR unknown command 'FOO'"), "ERR");
        assert_eq!(
            class("WRONGTYPE Operation against a key holding the wrong kind of value"),
            "WRONGTYPE"
        );
        assert_eq!(class("MOVED 3999 127.0.0.1:6381"), "MOVED");
        assert_eq!(class("ASK 3999 127.0.0.1:6381"), "ASK");
        assert_eq!(class("BUSYKEY Target key name already exists."), "BUSYKEY");
        assert_eq!(class("err lowercase"), "ERR");
        assert_eq!(class("NOAUTH"), "NOAUTH");
        assert_eq!(class("-ERR raw"), "ERR");
        assert_eq!(class("MYMODULEERROR something"), OTHER);
        assert_eq!(class("ASKING"), OTHER);
        assert_eq!(class(""), OTHER);
        assert_eq!(class(" ERR"), OTHER);
        assert_eq!(class("AVERYVERYLONGWORDINDEED x"), OTHER);
        assert_eq!(error_class(b"\xff\xfe ERR"), ERROR_CLASSES.len());
    }

    #[test]
    fn classes_are_upper_case_and_short() {
        for c in ERROR_CLASSES {
            assert!(c.len() <= MAX_WORD);
            assert_eq!(c, c.to_ascii_uppercase());
            assert_eq!(class(c), c);
        }
    }
}
