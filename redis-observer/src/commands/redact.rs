//! Secrets: which arguments, replies and error texts of which commands must never be written, in
//! one table ([`RULES`]) beside the command table, and the functions every output applies.
//!
//! Where the rules are applied:
//! - the pairing, when it builds a record: secret arguments are never copied ([`Policy`]), and
//!   every reply passes through [`reply`] when the record is emitted (log lines, `tail`, and the
//!   metrics' `error` label all read records);
//! - the log renderer, for MONITOR lines: Redis redacts only commands it parsed successfully
//!   (`HELLO AUTH u pw` without a version reaches MONITOR in clear), so [`monitor_line`] parses
//!   each line's quoted arguments and applies the same table;
//! - nothing else writes payload bytes (`run --dump-events` prints lengths and hashes only; the
//!   daemon's own messages carry no payload).
//!
//! Unknown or uncertain means redact: a command whose name (or a container's subcommand) was cut
//! by a capture gap shows no arguments, no reply text and only the class of an error; a reply
//! whose pairing a gap left in doubt shows no text ([`UNCERTAIN_REPLY`]).

use super::{Args, CommandId, UNKNOWN, id_of, migrate_options, resolve_in};
use crate::metrics::errors::{ERROR_CLASSES, error_class};
use crate::record::ReplySummary;
use crate::resp::{ArgSpan, Kind, Request};

/// Configuration parameters whose values are credentials: never logged in CONFIG SET, never
/// rendered from CONFIG GET. The TLS key passphrases go beyond the contract's list (Redis 7.0
/// itself does not redact them in SLOWLOG) because they are passwords all the same.
pub const SECRET_CONFIGS: [&str; 5] = [
    "requirepass",
    "masterauth",
    "masteruser",
    "tls-key-file-pass",
    "tls-client-key-file-pass",
];

/// Sentinel's own credentials (`SENTINEL SET <master> auth-pass`, `SENTINEL CONFIG SET
/// sentinel-pass`): the password and user it authenticates with to masters and other Sentinels.
const SENTINEL_SET_SECRETS: [&str; 2] = ["auth-pass", "auth-user"];
const SENTINEL_CONFIG_SECRETS: [&str; 2] = ["sentinel-pass", "sentinel-user"];

/// Which arguments of a command are secret. Indices count the request's words from 0 (the name),
/// so a subcommand is 1: `CONFIG SET requirepass pw` has the value at 3.
#[derive(Clone, Copy, Debug)]
pub enum SecretArgs {
    None,
    /// Every argument from this index on.
    From(usize),
    /// The `n` arguments after any `keyword` (HELLO's `AUTH user pass`, anywhere, so that
    /// malformed forms such as `HELLO AUTH user pass` are covered too).
    AfterKeyword {
        keyword: &'static str,
        n: usize,
    },
    /// `name value` pairs from index `from` on: the value after any of `names` (any case).
    Pairs {
        from: usize,
        names: &'static [&'static str],
    },
    /// ACL rules from index `from`: `>pw`, `<pw`, `#hash`, `!hash`, and selectors holding one
    /// (`(>pw ~k)`, which Redis rejects, echoing it).
    AclRules {
        from: usize,
    },
    /// MIGRATE's `AUTH pw` and `AUTH2 user pw` options.
    MigrateAuth,
    /// A whole command from index `at` on (COMMAND GETKEYS, ACL DRYRUN): its own rules apply.
    Wraps {
        at: usize,
    },
}

/// Whether a command's (non-error) reply is secret.
#[derive(Clone, Copy, Debug)]
pub enum SecretReply {
    No,
    Always,
    /// When any glob pattern from index `from` on could match one of `names` (Redis glob rules,
    /// any case; a pattern not kept whole counts as matching).
    Matching {
        from: usize,
        names: &'static [&'static str],
    },
}

/// One command's secrets.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// As the log names it: `"CONFIG SET"`, `"SENTINEL CONFIG SET"`.
    pub command: &'static str,
    pub args: SecretArgs,
    pub reply: SecretReply,
    /// Its error replies can echo arguments (`ERR Error in ACL SETUSER modifier '<pw': ...`,
    /// Sentinel's `Invalid argument '...'`, and `unknown command 'X', with args beginning with:
    /// ...` from a server that lacks the command): errors show only their class (`ERR`).
    pub error_echoes: bool,
}

const fn rule(command: &'static str, args: SecretArgs, reply: SecretReply) -> Rule {
    Rule {
        command,
        args,
        reply,
        // Every command with secret arguments: which error echoes which argument is Redis's
        // business, and it differs by version.
        error_echoes: !matches!(args, SecretArgs::None),
    }
}

/// The redaction table. Commands the command table does not hold (Sentinel's: the table comes
/// from a plain server) are matched by their words.
pub const RULES: [Rule; 14] = [
    rule("AUTH", SecretArgs::From(1), SecretReply::No),
    rule(
        "HELLO",
        SecretArgs::AfterKeyword {
            keyword: "AUTH",
            n: 2,
        },
        SecretReply::No,
    ),
    rule("MIGRATE", SecretArgs::MigrateAuth, SecretReply::No),
    rule(
        "CONFIG SET",
        SecretArgs::Pairs {
            from: 2,
            names: &SECRET_CONFIGS,
        },
        SecretReply::No,
    ),
    rule(
        "CONFIG GET",
        SecretArgs::None,
        SecretReply::Matching {
            from: 2,
            names: &SECRET_CONFIGS,
        },
    ),
    rule(
        "ACL SETUSER",
        SecretArgs::AclRules { from: 3 },
        SecretReply::No,
    ),
    rule("ACL GETUSER", SecretArgs::None, SecretReply::Always),
    rule("ACL LIST", SecretArgs::None, SecretReply::Always),
    rule("ACL DRYRUN", SecretArgs::Wraps { at: 3 }, SecretReply::No),
    rule(
        "COMMAND GETKEYS",
        SecretArgs::Wraps { at: 2 },
        SecretReply::No,
    ),
    rule(
        "COMMAND GETKEYSANDFLAGS",
        SecretArgs::Wraps { at: 2 },
        SecretReply::No,
    ),
    rule(
        "SENTINEL SET",
        SecretArgs::Pairs {
            from: 3,
            names: &SENTINEL_SET_SECRETS,
        },
        SecretReply::No,
    ),
    rule(
        "SENTINEL CONFIG SET",
        SecretArgs::Pairs {
            from: 3,
            names: &SENTINEL_CONFIG_SECRETS,
        },
        SecretReply::No,
    ),
    rule(
        "SENTINEL CONFIG GET",
        SecretArgs::None,
        SecretReply::Matching {
            from: 3,
            names: &SENTINEL_CONFIG_SECRETS,
        },
    ),
];

/// Containers whose unknown subcommands show no arguments (`ACL SETUSR alice >pw` is a typo
/// away from a password).
// COMMAND wraps other commands (GETKEYS, GETKEYSANDFLAGS): their secrets are its arguments.
const SECRET_CONTAINERS: [&str; 4] = ["ACL", "COMMAND", "CONFIG", "SENTINEL"];

/// `RULE_OF[id]`: 1 + the index in [`RULES`] of the rule for command `id`, 0 for none. Built at
/// compile time, so finding a command's rule is one array read.
const RULE_OF: [u8; super::ENTRIES.len()] = {
    let mut t = [0u8; super::ENTRIES.len()];
    let mut r = 0;
    while r < RULES.len() {
        let id = id_of(RULES[r].command);
        if id.0 != 0 {
            t[id.0 as usize] = r as u8 + 1;
        }
        r += 1;
    }
    t
};

// The table's own commands must be in the command table (Sentinel's are not, by design).
const _: () = {
    let mut r = 0;
    while r < RULES.len() {
        let c = RULES[r].command.as_bytes();
        let sentinel = c.len() > 8 && c[0] == b'S' && c[1] == b'E' && c[2] == b'N';
        assert!(
            sentinel || id_of(RULES[r].command).0 != 0,
            "a redaction rule names a command missing from the command table"
        );
        r += 1;
    }
};

fn rule_for(id: CommandId) -> Option<&'static Rule> {
    let r = *RULE_OF.get(id.index())?;
    RULES.get(usize::from(r).checked_sub(1)?)
}

// ------------------------------------------------------------------------------------------------
// Policy: one command's redaction, decided once when its record is built

/// How a command's record is redacted. Bits, so that it fits the pairing's queue entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy(pub u8);

/// Some arguments are secret: ask [`Policy::secret_arg`].
const ARGS: u8 = 1;
/// Every argument is hidden (name or subcommand uncertain, unknown subcommand of a container
/// with secrets).
const ALL_ARGS: u8 = 2;
/// The reply's text is secret.
const REPLY: u8 = 4;
/// Error texts show only their class.
const ERRORS: u8 = 8;
/// The pairing is in doubt: scalar texts are hidden (an aggregate's size is harmless).
const UNCERTAIN: u8 = 16;

/// What a reply whose pairing a gap left in doubt may show: no text, error class only.
pub const UNCERTAIN_REPLY: Policy = Policy(UNCERTAIN | ERRORS);

impl Policy {
    pub const NONE: Policy = Policy(0);

    /// Every argument hidden, reply and error texts too.
    pub const ALL: Policy = Policy(ALL_ARGS | REPLY | ERRORS);

    #[must_use]
    pub fn union(self, o: Policy) -> Policy {
        Policy(self.0 | o.0)
    }

    /// Argument `i` of `req` (0 = the name) must be written as `(redacted)`.
    #[inline]
    pub fn secret_arg(self, id: CommandId, req: &Request, i: usize) -> bool {
        if self.0 & ALL_ARGS != 0 {
            return i > 0;
        }
        self.0 & ARGS != 0 && is_secret_arg(id, req, i)
    }
}

/// The redaction of `req`, resolved as `id`. Cheap for the commands without secrets (one array
/// read and a length check).
pub fn policy(id: CommandId, req: &Request) -> Policy {
    policy_in(id, Args::new(req))
}

fn policy_in(id: CommandId, a: Args) -> Policy {
    if let Some(r) = rule_for(id) {
        return of_rule(r, a);
    }
    if id != UNKNOWN {
        return Policy::NONE;
    }
    // Unknown: a name or subcommand cut short is uncertain; Sentinel's commands are matched by
    // their words; unknown subcommands of containers with secrets show nothing.
    let whole = |i: usize| matches!(a.get(i), Some((b, len)) if len == b.len() as u64);
    if a.argc() == 0 {
        return Policy::NONE;
    }
    if !whole(0) {
        return Policy::ALL;
    }
    let container = SECRET_CONTAINERS.iter().any(|c| a.is(0, c));
    if !container {
        return Policy::NONE;
    }
    if a.argc() >= 2 && !whole(1) {
        return Policy::ALL;
    }
    if a.is(0, "SENTINEL") {
        for r in &RULES {
            let mut words = r.command.split(' ');
            if words.next() != Some("SENTINEL") {
                continue;
            }
            if words.enumerate().all(|(k, w)| a.may_be(k + 1, w)) {
                return of_rule(r, a);
            }
        }
        return Policy::NONE;
    }
    Policy::ALL
}

fn of_rule(r: &Rule, a: Args) -> Policy {
    let mut p = 0;
    if !matches!(r.args, SecretArgs::None) {
        p |= ARGS;
    }
    if r.error_echoes {
        p |= ERRORS;
    }
    let secret_reply = match r.reply {
        SecretReply::No => false,
        SecretReply::Always => true,
        SecretReply::Matching { from, names } => {
            let argc = usize::try_from(a.argc()).unwrap_or(usize::MAX);
            (from..argc).any(|i| match a.get(i) {
                Some((pat, len)) if len == pat.len() as u64 => {
                    names.iter().any(|name| glob_match(pat, name.as_bytes()))
                }
                _ => true,
            })
        }
    };
    if secret_reply {
        // An error in the place of a secret reply is as doubtful as the reply: only its class
        // is shown (a reply stream that shifted could put another command's echoing error
        // there).
        p |= REPLY | ERRORS;
    }
    Policy(p)
}

/// Argument `i` (0 = the name) must be written as `"(redacted)"`, per [`RULES`]. Where capture
/// cut a keyword short, an argument that might be a secret is treated as one.
pub fn is_secret_arg(id: CommandId, req: &Request, i: usize) -> bool {
    secret_in(id, Args::new(req), i, 0)
}

fn secret_in(id: CommandId, a: Args, i: usize, depth: u8) -> bool {
    if i == 0 || i as u64 >= a.argc() {
        return false;
    }
    let rule = match rule_for(id) {
        Some(r) => r,
        None if id == UNKNOWN => match policy_in(id, a) {
            p if p.0 & ALL_ARGS != 0 => return true,
            p if p.0 & ARGS != 0 => match sentinel_rule(a) {
                Some(r) => r,
                None => return true,
            },
            _ => return false,
        },
        None => return false,
    };
    match rule.args {
        SecretArgs::None => false,
        SecretArgs::From(k) => i >= k,
        SecretArgs::AfterKeyword { keyword, n } => {
            (1..i).rev().take(n).any(|j| a.may_be(j, keyword))
        }
        SecretArgs::Pairs { from, names } => {
            i > from && (i - from) % 2 == 1 && names.iter().any(|name| a.may_be(i - 1, name))
        }
        SecretArgs::AclRules { from } => i >= from && acl_rule_is_secret(a.get(i)),
        SecretArgs::MigrateAuth => migrate_options(a, i).1,
        SecretArgs::Wraps { at } => {
            if i < at {
                return false;
            }
            if depth >= 4 {
                return true; // nested too deep to follow: assume the worst
            }
            let inner = a.shifted(at);
            let (inner_id, _) = resolve_in(inner);
            let inner_policy = policy_in(inner_id, inner);
            inner_policy.0 & ALL_ARGS != 0 || secret_in(inner_id, inner, i - at, depth + 1)
        }
    }
}

fn sentinel_rule(a: Args) -> Option<&'static Rule> {
    RULES.iter().find(|r| {
        let mut words = r.command.split(' ');
        words.next() == Some("SENTINEL")
            && a.is(0, "SENTINEL")
            && words.enumerate().all(|(k, w)| a.may_be(k + 1, w))
    })
}

/// An ACL rule carries a password or its hash: `>pw`, `<pw`, `#hash`, `!hash`, or a selector
/// `( ... )` with such a word inside. Nothing kept to look at means the worst.
fn acl_rule_is_secret(arg: Option<(&[u8], u64)>) -> bool {
    let Some((b, len)) = arg else {
        return false;
    };
    let secret_word = |w: &[u8]| matches!(w.first(), Some(b'>' | b'<' | b'#' | b'!'));
    match b.first() {
        None => len > 0,
        Some(b'(') => {
            let cut = len > b.len() as u64;
            cut || b
                .get(1..)
                .unwrap_or_default()
                .split(|c| c.is_ascii_whitespace() || *c == b'(')
                .any(secret_word)
        }
        Some(_) => secret_word(b),
    }
}

/// The reply holds secrets and must not be rendered (ACL GETUSER, ACL LIST, CONFIG GET of a
/// pattern that could match one of [`SECRET_CONFIGS`]...).
pub fn reply_is_secret(id: CommandId, req: &Request) -> bool {
    policy(id, req).0 & REPLY != 0
}

// ------------------------------------------------------------------------------------------------
// Replies

/// A reply summary as `policy` lets it be shown: secret text becomes `(redacted)`, an error
/// keeps only its class (from a fixed set, so it can carry nothing the client sent). A simple
/// string shaped like a MONITOR line is never shown as a command's reply (only a pairing gone
/// wrong puts it there).
#[must_use]
pub fn reply(r: ReplySummary<'_>, policy: Policy) -> ReplySummary<'_> {
    let hide = if r.kind == Kind::Error {
        // Redis's request parser's own texts (`ERR Protocol error: invalid bulk length`, ...)
        // echo nothing of the request but, at most, the one byte found where `$` was expected.
        policy.0 & ERRORS != 0 && !r.text.starts_with(b"ERR Protocol error: ")
    } else if r.kind.is_aggregate() || r.kind == Kind::Null {
        // A doubtful pairing has no text to hide here: the log shows an aggregate's size only.
        policy.0 & REPLY != 0
    } else {
        policy.0 & (REPLY | UNCERTAIN) != 0 || (r.kind == Kind::Simple && is_monitor_line(r.text))
    };
    if !hide || r.redacted {
        return r;
    }
    ReplySummary {
        kind: r.kind,
        len: r.len,
        text: if r.kind == Kind::Error {
            error_class_word(r.text)
        } else {
            &[]
        },
        redacted: true,
    }
}

/// The error's class word (`ERR`, `WRONGPASS`...) from the fixed set, or nothing.
fn error_class_word(text: &[u8]) -> &'static [u8] {
    ERROR_CLASSES
        .get(error_class(text))
        .map_or(&[][..], |c| c.as_bytes())
}

// ------------------------------------------------------------------------------------------------
// MONITOR lines

/// `1700000000.123456 [0 127.0.0.1:5000] "get" "k"` (the `+` stripped).
pub fn is_monitor_line(text: &[u8]) -> bool {
    let digits = |t: &[u8]| t.iter().take_while(|b| b.is_ascii_digit()).count();
    let secs = digits(text);
    let Some(rest) = text.get(secs..).and_then(|r| r.strip_prefix(b".")) else {
        return false;
    };
    let micros = digits(rest);
    secs > 0 && micros > 0 && rest.get(micros..).is_some_and(|r| r.starts_with(b" ["))
}

/// Most arguments of a MONITOR line looked at; the rest are hidden.
const MONITOR_MAX_ARGS: usize = 64;

/// Writes `line` (a MONITOR line's kept text) to `out` with the arguments the table calls secret
/// replaced by `"(redacted)"`. Redis's sdscatrepr quoting is parsed back (`\"`, `\\`, `\xhh`...)
/// to find each argument; what cannot be parsed (a cut line, a malformed one) is hidden.
pub fn monitor_line(line: &[u8], out: &mut Vec<u8>) {
    // The `[db addr] ` prefix is Redis's own; arguments start after it.
    let Some(close) = line.iter().position(|&b| b == b']') else {
        out.extend_from_slice(b"(redacted)");
        return;
    };
    let head = line.get(..=close).unwrap_or_default();
    out.extend_from_slice(head);
    let rest = line.get(close + 1..).unwrap_or_default();

    // Unquote the arguments into one buffer, remembering each one's raw (quoted) span.
    let mut req = Request::default();
    let mut raw: Vec<(usize, usize)> = Vec::new();
    let mut p = 0;
    let mut clean_end = true;
    while p < rest.len() {
        if raw.len() >= MONITOR_MAX_ARGS {
            clean_end = false;
            break;
        }
        if rest.get(p) != Some(&b' ') || rest.get(p + 1) != Some(&b'"') {
            clean_end = false;
            break;
        }
        let start = p + 1;
        let buf_start = req.buf.len();
        let mut q = start + 1;
        let mut closed = false;
        while let Some(&c) = rest.get(q) {
            match c {
                b'"' => {
                    closed = true;
                    q += 1;
                    break;
                }
                b'\\' => {
                    let (byte, used) = unescape(rest.get(q + 1..).unwrap_or_default());
                    match byte {
                        Some(b) => req.buf.push(b),
                        None => break,
                    }
                    q += 1 + used;
                }
                _ => {
                    req.buf.push(c);
                    q += 1;
                }
            }
        }
        let kept = req.buf.len() - buf_start;
        // A cut argument: its full length is unknown, at least one more byte.
        let len = kept as u64 + u64::from(!closed);
        req.args.push(ArgSpan {
            start: u32::try_from(buf_start).unwrap_or(u32::MAX),
            kept: u32::try_from(kept).unwrap_or(u32::MAX),
            len,
        });
        raw.push((start, q.min(rest.len())));
        p = q;
        if !closed {
            clean_end = false;
            break;
        }
    }
    // More arguments may follow a line cut short.
    req.argc = raw.len() as u64 + u64::from(!clean_end);
    let (id, _) = super::resolve(&req);
    let pol = if clean_end || !raw.is_empty() {
        policy(id, &req)
    } else {
        Policy::ALL
    };
    for (i, &(s, e)) in raw.iter().enumerate() {
        out.push(b' ');
        if pol.secret_arg(id, &req, i) || (i + 1 == raw.len() && !clean_end && i > 0) {
            // A cut last argument is hidden whatever it is: its command may not be known yet.
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            out.extend_from_slice(rest.get(s..e).unwrap_or_default());
        }
    }
    if !clean_end {
        out.extend_from_slice(" …".as_bytes());
    }
}

/// One escape of sdscatrepr after its backslash: the byte and how many bytes it used.
fn unescape(s: &[u8]) -> (Option<u8>, usize) {
    let hex = |c: u8| (c as char).to_digit(16);
    match s.first() {
        Some(b'n') => (Some(b'\n'), 1),
        Some(b'r') => (Some(b'\r'), 1),
        Some(b't') => (Some(b'\t'), 1),
        Some(b'a') => (Some(7), 1),
        Some(b'b') => (Some(8), 1),
        Some(b'x') => match (
            s.get(1).and_then(|&c| hex(c)),
            s.get(2).and_then(|&c| hex(c)),
        ) {
            (Some(h), Some(l)) => (u8::try_from(h * 16 + l).ok(), 3),
            _ => (None, 0),
        },
        Some(&c) => (Some(c), 1),
        None => (None, 0),
    }
}

// ------------------------------------------------------------------------------------------------
// Glob

/// Redis' `stringmatchlen` with `nocase`, without its recursion: `*`, `?`, `[...]` (with `^` and
/// ranges), `\` escapes. The classic backtrack-to-the-last-star walk, O(pattern × text).
pub(super) fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pat.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(_) => {
                if let Some(next) = text.get(t).and_then(|&c| glob_one(pat, p, c)) {
                    p = next;
                    t += 1;
                    continue;
                }
            }
            None if t == text.len() => return true,
            None => {}
        }
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// If the single-character token at `pat[p]` matches `c`, the index after the token.
fn glob_one(pat: &[u8], p: usize, c: u8) -> Option<usize> {
    let eq = |a: u8, b: u8| a.eq_ignore_ascii_case(&b);
    match *pat.get(p)? {
        b'?' => Some(p + 1),
        b'\\' => match pat.get(p + 1) {
            Some(&lit) => eq(lit, c).then_some(p + 2),
            None => eq(b'\\', c).then_some(p + 1),
        },
        b'[' => {
            let mut q = p + 1;
            let not = pat.get(q) == Some(&b'^');
            if not {
                q += 1;
            }
            let mut hit = false;
            loop {
                match (pat.get(q), pat.get(q + 1), pat.get(q + 2)) {
                    (None, ..) => break, // unterminated: the class runs to the end
                    (Some(b'\\'), Some(&lit), _) => {
                        hit |= lit == c; // Redis compares escaped class members case-sensitively
                        q += 2;
                    }
                    (Some(b']'), ..) => {
                        q += 1;
                        break;
                    }
                    (Some(&lo), Some(b'-'), Some(&hi)) => {
                        let (lo, hi) = (lo.to_ascii_lowercase(), hi.to_ascii_lowercase());
                        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        hit |= (lo..=hi).contains(&c.to_ascii_lowercase());
                        q += 3;
                    }
                    (Some(&lit), ..) => {
                        hit |= eq(lit, c);
                        q += 1;
                    }
                }
            }
            (hit != not).then_some(q)
        }
        lit => eq(lit, c).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{ACL_SETUSER as ACL_SETUSER_ID, resolve};

    fn req(words: &[&str]) -> Request {
        let mut r = Request::default();
        for w in words {
            let start = u32::try_from(r.buf.len()).unwrap();
            r.buf.extend_from_slice(w.as_bytes());
            r.args.push(ArgSpan {
                start,
                kept: u32::try_from(w.len()).unwrap(),
                len: w.len() as u64,
            });
        }
        r.argc = words.len() as u64;
        r
    }

    /// The indices of `words` the table hides.
    fn hidden(words: &str) -> Vec<usize> {
        let r = req(&words.split(' ').collect::<Vec<_>>());
        let (id, _) = resolve(&r);
        let p = policy(id, &r);
        (0..words.split(' ').count())
            .filter(|&i| p.secret_arg(id, &r, i))
            .collect()
    }

    #[test]
    fn table_rules() {
        assert_eq!(hidden("AUTH u pw"), [1, 2]);
        assert_eq!(hidden("auth u pw extra"), [1, 2, 3]);
        assert_eq!(hidden("HELLO AUTH u pw"), [2, 3]);
        assert_eq!(hidden("HELLO 4 AUTH u pw"), [3, 4]);
        assert_eq!(hidden("CONFIG SET maxmemory 1 requirepass pw"), [5]);
        assert_eq!(hidden("ACL SETUSER a on >pw <old #h !h ~k"), [4, 5, 6, 7]);
        // Selectors are one argument each.
        for (sel, secret) in [("(>pw ~k)", true), ("(~k >pw)", true), ("(~x +get)", false)] {
            let r = req(&["ACL", "SETUSER", "a", sel]);
            assert_eq!(
                policy(ACL_SETUSER_ID, &r).secret_arg(ACL_SETUSER_ID, &r, 3),
                secret
            );
        }
        assert_eq!(hidden("ACL DRYRUN a AUTH pw"), [4]);
        assert_eq!(hidden("COMMAND GETKEYS HELLO 3 AUTH u pw"), [5, 6]);
        assert_eq!(hidden("SENTINEL SET m auth-pass pw"), [4]);
        assert_eq!(hidden("sentinel set m quorum 2 AUTH-USER u"), [6]);
        assert_eq!(hidden("SENTINEL CONFIG SET sentinel-pass pw"), [4]);
        assert_eq!(
            hidden("SENTINEL CONFIG SET sentinel-user u sentinel-pass p"),
            [4, 6]
        );
        assert!(hidden("SENTINEL MASTERS").is_empty());
        assert!(hidden("SENTINEL CONFIG GET *").is_empty());
        assert_eq!(hidden("CONFIG SETT requirepass pw"), [1, 2, 3]);
        assert!(hidden("GET k").is_empty());
        assert!(hidden("FOO AUTH pw").is_empty());
    }

    #[test]
    fn cut_names_hide_everything() {
        let mut r = req(&["AU", "u", "pw"]);
        r.args[0].len = 4;
        let (id, _) = resolve(&r);
        assert_eq!(id, UNKNOWN);
        assert_eq!(policy(id, &r), Policy::ALL);
        let mut r = req(&["CONFIG", "SE", "requirepass", "pw"]);
        r.args[1].len = 3;
        let (id, _) = resolve(&r);
        assert_eq!(policy(id, &r), Policy::ALL);
    }

    #[test]
    fn replies() {
        let err = ReplySummary {
            kind: Kind::Error,
            len: 40,
            text: b"ERR Error in ACL SETUSER modifier '<pw': x",
            redacted: false,
        };
        let r = req(&["ACL", "SETUSER", "a", "<pw"]);
        let (id, _) = resolve(&r);
        let out = reply(err, policy(id, &r));
        assert!(out.redacted);
        assert_eq!(out.text, b"ERR");
        let r = req(&["GET", "k"]);
        let (id, _) = resolve(&r);
        assert_eq!(reply(err, policy(id, &r)).text, err.text);
        // Sentinel CONFIG GET of its password.
        let r = req(&["SENTINEL", "CONFIG", "GET", "sentinel-*"]);
        let (id, _) = resolve(&r);
        assert!(reply_is_secret(id, &r));
        // A MONITOR-shaped simple reply is never shown as a command's reply.
        let mon = ReplySummary {
            kind: Kind::Simple,
            len: 30,
            text: b"1.2 [0 1.2.3.4:5] \"auth\" \"pw\" \"x\"",
            redacted: false,
        };
        assert!(reply(mon, Policy::NONE).redacted);
        let bulk = ReplySummary {
            kind: Kind::Bulk,
            len: 2,
            text: b"pw",
            redacted: false,
        };
        assert!(reply(bulk, UNCERTAIN_REPLY).text.is_empty());
    }

    fn mon(line: &str) -> String {
        let mut out = Vec::new();
        monitor_line(line.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn monitor_lines() {
        let h = "1700000000.123456 [0 127.0.0.1:5000]";
        assert_eq!(
            mon(&format!("{h} \"get\" \"k\"")),
            format!("{h} \"get\" \"k\"")
        );
        assert_eq!(
            mon(&format!("{h} \"HELLO\" \"AUTH\" \"u\" \"pw\"")),
            format!("{h} \"HELLO\" \"AUTH\" \"(redacted)\" \"(redacted)\"")
        );
        assert_eq!(
            mon(&format!("{h} \"AUTH\" \"u\" \"pw\" \"extra\"")),
            format!("{h} \"AUTH\" \"(redacted)\" \"(redacted)\" \"(redacted)\"")
        );
        // Escapes are parsed back, so the quoting does not hide a keyword.
        assert_eq!(
            mon(&format!(
                "{h} \"config\" \"set\" \"requirepass\" \"p\\\"w\\x41\""
            )),
            format!("{h} \"config\" \"set\" \"requirepass\" \"(redacted)\"")
        );
        assert_eq!(
            mon(&format!(
                "{h} \"SENTINEL\" \"SET\" \"m\" \"auth-pass\" \"pw\""
            )),
            format!("{h} \"SENTINEL\" \"SET\" \"m\" \"auth-pass\" \"(redacted)\"")
        );
        // Cut short: the cut argument is hidden, whatever the command.
        assert_eq!(
            mon(&format!("{h} \"set\" \"k\" \"val")),
            format!("{h} \"set\" \"k\" \"(redacted)\" …")
        );
        assert_eq!(mon(&format!("{h} \"AU")), format!("{h} \"AU …"));
        assert_eq!(mon(&format!("{h} garbage pw")), format!("{h} …"));
        assert_eq!(mon("no bracket pw"), "(redacted)");
    }
}
