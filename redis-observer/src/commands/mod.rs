//! The Redis command table: names, arity, flags and key positions, merged from real Redis and
//! Valkey servers of several versions (`table.rs`, see `data/README.md`), plus the per-command
//! knowledge the observer needs on top: resolving a request to a command (with container
//! subcommands such as `CONFIG GET`), finding its first key, and which arguments and replies
//! carry secrets.
//!
//! Lookups are allocation-free: a name is upper-cased into a stack buffer and looked up in an
//! open-addressing hash table built at compile time from the generated entries. A name that is
//! not in the table resolves to [`UNKNOWN`], so clients can never create metric label values.

mod keys;
pub mod redact;
mod table;

pub use keys::keys;
pub use redact::{SECRET_CONFIGS, is_secret_arg, reply_is_secret};
pub use table::{COMMAND_COUNT, SERVERS, acl, flag, key_flag};

#[cfg(test)]
use redact::glob_match;

use crate::resp::Request;

/// Index into the command table. Ids are `0..count()`, stable within one build only (they follow
/// the generated table's order); use [`name`] for anything that leaves the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u16);

/// Any command the table does not know (including unknown subcommands of known containers).
pub const UNKNOWN: CommandId = CommandId(0);

impl CommandId {
    pub fn info(self) -> &'static CommandInfo {
        info(self)
    }

    /// Metric label value / log name.
    pub fn name(self) -> &'static str {
        info(self).name
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One command or container subcommand, as `COMMAND INFO` describes it.
#[derive(Debug)]
pub struct CommandInfo {
    /// Upper case; subcommands with their container: `"GET"`, `"CONFIG GET"`. `"UNKNOWN"` for id 0.
    pub name: &'static str,
    /// The word matched at its level: `"GET"` for both `GET` and `CONFIG GET`.
    pub word: &'static str,
    /// The container of a subcommand (`CONFIG` for `CONFIG GET`); [`UNKNOWN`] for top-level ones.
    pub parent: CommandId,
    /// Redis arity: `n` means exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// Bits of [`flag`].
    pub flags: u32,
    /// Bits of [`acl`].
    pub acl: u32,
    /// Legacy key range (`COMMAND INFO` first key, last key, step); prefer [`first_key`].
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub key_specs: &'static [KeySpec],
    /// Subcommands of a container (`CONFIG` → `CONFIG GET`, ...), empty otherwise.
    pub subcommands: &'static [CommandId],
    /// Which of [`SERVERS`] know it: bit `i` for `SERVERS[i]`.
    pub servers: u8,
}

impl CommandInfo {
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// Whether the server version named `label` (`"redis-7.0.15"`, as in [`SERVERS`]) knows it.
    pub fn known_to(&self, label: &str) -> bool {
        SERVERS
            .iter()
            .position(|(l, _)| *l == label)
            .is_some_and(|i| self.servers & (1 << i) != 0)
    }

    /// Whether `argc` arguments (name included) pass Redis' arity check; a failing command is
    /// rejected (counted as `rejected_calls`) without running.
    pub fn arity_ok(&self, argc: u64) -> bool {
        let n = u64::from(self.arity.unsigned_abs());
        if self.arity >= 0 {
            argc == n
        } else {
            argc >= n
        }
    }
}

/// A key spec (Redis 7): where the search for keys begins and how keys are found from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Bits of [`key_flag`].
    pub flags: u16,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeginSearch {
    /// Keys start at this argument index.
    Index(i32),
    /// Keys start after `keyword`, searched from `startfrom` forwards (or, if negative, from
    /// `argc + startfrom` backwards).
    Keyword {
        keyword: &'static str,
        startfrom: i32,
    },
    /// Only the command's own code knows (SORT's STORE and BY/GET).
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys up to `lastkey` (relative to the begin index; negative: from the end of the
    /// arguments, or with `limit` > 0: `1/limit` of the remaining arguments).
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// The key count is the argument at `begin + keynumidx`, keys start at `begin + firstkey`.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}

// ------------------------------------------------------------------------------------------------
// The table and its hash index

// Indexed by id. Also read at compile time, to build the hash index and the named ids.
use table::ENTRIES;

const _: () = assert!(ENTRIES.len() < u16::MAX as usize, "ids are u16");

/// Longest word (command name or subcommand name) in the table; longer names are unknown.
pub const MAX_WORD_LEN: usize = max_word_len();
/// Stack buffer for upper-casing a word: whole u64 words so hashing reads them directly.
const WORD_BUF: usize = MAX_WORD_LEN.next_multiple_of(8);

/// At most a quarter full (4,096 u16 slots for the 584 entries of the merged table): probe
/// chains stay short and every probe sequence meets an empty slot.
const SLOT_BITS: u32 = (ENTRIES.len() * 4).next_power_of_two().trailing_zeros();
const SLOTS_LEN: usize = 1 << SLOT_BITS;
const SLOT_MASK: usize = SLOTS_LEN - 1;
/// Slot → id; 0 (`UNKNOWN`, never inserted) marks an empty slot.
static SLOTS: [u16; SLOTS_LEN] = build_slots();
/// Longest probe sequence of a present entry (checked by a test).
#[cfg(test)]
const MAX_PROBE: usize = max_probe();

const fn max_word_len() -> usize {
    let mut max = 0;
    let mut i = 1;
    while i < ENTRIES.len() {
        let w = ENTRIES[i].word.as_bytes();
        assert!(!w.is_empty(), "empty command word");
        let mut j = 0;
        while j < w.len() {
            // Lookups upper-case their input, so the table must hold upper-case words only.
            assert!(
                !w[j].is_ascii_lowercase() && w[j] != b' ',
                "command words must be upper case"
            );
            j += 1;
        }
        if w.len() > max {
            max = w.len();
        }
        i += 1;
    }
    max
}

/// Multiplicative (Fx-style) hash over 8-byte little-endian words of `w`, zero padded, seeded
/// with the parent id and the length. Byte-wise so that it can run at compile time; [`lookup`]
/// computes the same value from its padded buffer.
const fn hash(parent: u16, w: &[u8]) -> usize {
    let mut h = seed(parent, w.len());
    let mut i = 0;
    while i < w.len() {
        let mut word = 0u64;
        let mut j = 0;
        while j < 8 && i + j < w.len() {
            word |= (w[i + j] as u64) << (8 * j);
            j += 1;
        }
        h = mix(h, word);
        i += 8;
    }
    slot_of(h)
}

const K: u64 = 0x517c_c1b7_2722_0a95;

const fn seed(parent: u16, len: usize) -> u64 {
    ((parent as u64) << 8) ^ (len as u64)
}

const fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(K)
}

const fn slot_of(h: u64) -> usize {
    // The high bits of a multiplicative hash are the well mixed ones.
    (h >> (64 - SLOT_BITS)) as usize
}

const fn words_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn build_slots() -> [u16; SLOTS_LEN] {
    let mut slots = [0u16; SLOTS_LEN];
    let mut id = 1;
    while id < ENTRIES.len() {
        let e = &ENTRIES[id];
        let mut s = hash(e.parent.0, e.word.as_bytes());
        while slots[s] != 0 {
            let o = &ENTRIES[slots[s] as usize];
            assert!(
                !(o.parent.0 == e.parent.0 && words_eq(o.word.as_bytes(), e.word.as_bytes())),
                "duplicate command in the table"
            );
            s = (s + 1) & SLOT_MASK;
        }
        slots[s] = id as u16;
        id += 1;
    }
    slots
}

#[cfg(test)]
const fn max_probe() -> usize {
    let mut max = 0;
    let mut id = 1;
    while id < ENTRIES.len() {
        let e = &ENTRIES[id];
        let mut s = hash(e.parent.0, e.word.as_bytes());
        let mut n = 1;
        while SLOTS[s] as usize != id {
            s = (s + 1) & SLOT_MASK;
            n += 1;
        }
        if n > max {
            max = n;
        }
        id += 1;
    }
    max
}

/// The entry named `word` (any ASCII case) under `parent` ([`UNKNOWN`] for top-level commands).
/// `full_len` is the word's length on the wire: a word cut short in capture is not guessed at.
fn lookup(parent: CommandId, word: &[u8], full_len: u64) -> CommandId {
    let len = word.len();
    if len == 0 || len > MAX_WORD_LEN || full_len != len as u64 {
        return UNKNOWN;
    }
    let mut buf = [0u8; WORD_BUF];
    for (d, s) in buf.iter_mut().zip(word) {
        *d = s.to_ascii_uppercase();
    }
    let mut h = seed(parent.0, len);
    for chunk in buf.chunks_exact(8).take(len.div_ceil(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(w));
    }
    let Some(key) = buf.get(..len) else {
        return UNKNOWN;
    };
    let mut s = slot_of(h);
    // Bounded for form's sake: the table is mostly empty, so an empty slot comes first.
    for _ in 0..SLOTS_LEN {
        let id = SLOTS.get(s).copied().unwrap_or(0);
        if id == 0 {
            return UNKNOWN;
        }
        let hit = ENTRIES
            .get(usize::from(id))
            .is_some_and(|e| e.parent == parent && e.word.as_bytes() == key);
        if hit {
            return CommandId(id);
        }
        s = (s + 1) & SLOT_MASK;
    }
    UNKNOWN
}

// ------------------------------------------------------------------------------------------------
// Public lookups

/// Table size including `UNKNOWN`; ids are `0..count()`.
pub fn count() -> usize {
    ENTRIES.len()
}

/// Every id, `UNKNOWN` first (e.g. to pre-register metric label values).
pub fn all() -> impl Iterator<Item = CommandId> {
    (0..ENTRIES.len())
        .filter_map(|i| u16::try_from(i).ok())
        .map(CommandId)
}

pub fn info(id: CommandId) -> &'static CommandInfo {
    match ENTRIES.get(id.index()) {
        Some(e) => e,
        None => &ENTRIES[0],
    }
}

/// Metric label value / log name: `"GET"`, `"CONFIG GET"`, `"UNKNOWN"`.
pub fn name(id: CommandId) -> &'static str {
    info(id).name
}

/// The id of a name as the log writes it (`"CONFIG GET"`; also `"config|get"`, any case), or
/// [`UNKNOWN`]. A linear scan, usable in constants; for configuration and tests, not per packet.
pub const fn id_of(name: &str) -> CommandId {
    let q = name.as_bytes();
    let mut id = 1;
    while id < ENTRIES.len() {
        let n = ENTRIES[id].name.as_bytes();
        if n.len() == q.len() {
            let mut i = 0;
            while i < n.len() {
                let c = if q[i] == b'|' {
                    b' '
                } else {
                    q[i].to_ascii_uppercase()
                };
                if c != n[i] {
                    break;
                }
                i += 1;
            }
            if i == n.len() {
                return CommandId(id as u16);
            }
        }
        id += 1;
    }
    UNKNOWN
}

/// [`id_of`] for names the code relies on: a name missing from the table fails the build.
const fn known(name: &str) -> CommandId {
    let id = id_of(name);
    assert!(
        id.0 != 0,
        "a command the observer relies on is missing from the table"
    );
    id
}

// Commands the pairing, the log and the secret rules match on.
pub const ACL_GETUSER: CommandId = known("ACL GETUSER");
pub const ACL_LIST: CommandId = known("ACL LIST");
pub const ACL_SETUSER: CommandId = known("ACL SETUSER");
pub const AUTH: CommandId = known("AUTH");
pub const CLIENT_REPLY: CommandId = known("CLIENT REPLY");
pub const CLIENT_SETNAME: CommandId = known("CLIENT SETNAME");
/// Redis 7.2+: `UNKNOWN` with an older table (the session then recognises it by its words).
pub const CLIENT_SETINFO: CommandId = id_of("CLIENT SETINFO");
pub const CLIENT_TRACKING: CommandId = known("CLIENT TRACKING");
pub const COMMAND_GETKEYS: CommandId = known("COMMAND GETKEYS");
pub const COMMAND_GETKEYSANDFLAGS: CommandId = known("COMMAND GETKEYSANDFLAGS");
pub const CONFIG_GET: CommandId = known("CONFIG GET");
pub const CONFIG_SET: CommandId = known("CONFIG SET");
pub const DISCARD: CommandId = known("DISCARD");
pub const EXEC: CommandId = known("EXEC");
pub const HELLO: CommandId = known("HELLO");
pub const MIGRATE: CommandId = known("MIGRATE");
pub const MONITOR: CommandId = known("MONITOR");
pub const MULTI: CommandId = known("MULTI");
pub const PING: CommandId = known("PING");
pub const PSUBSCRIBE: CommandId = known("PSUBSCRIBE");
pub const PSYNC: CommandId = known("PSYNC");
pub const PUNSUBSCRIBE: CommandId = known("PUNSUBSCRIBE");
pub const QUIT: CommandId = known("QUIT");
pub const REPLCONF: CommandId = known("REPLCONF");
pub const RESET: CommandId = known("RESET");
pub const SELECT: CommandId = known("SELECT");
pub const SHUTDOWN: CommandId = known("SHUTDOWN");
pub const SSUBSCRIBE: CommandId = known("SSUBSCRIBE");
pub const SUBSCRIBE: CommandId = known("SUBSCRIBE");
pub const SUNSUBSCRIBE: CommandId = known("SUNSUBSCRIBE");
pub const SYNC: CommandId = known("SYNC");
pub const UNSUBSCRIBE: CommandId = known("UNSUBSCRIBE");
pub const UNWATCH: CommandId = known("UNWATCH");
pub const WAIT: CommandId = known("WAIT");
pub const WATCH: CommandId = known("WATCH");
pub const XREAD: CommandId = known("XREAD");
pub const XREADGROUP: CommandId = known("XREADGROUP");
/// Redis 7.2+; `UNKNOWN` with an older table, so compare only through [`is_blocking`].
const WAITAOF: CommandId = id_of("WAITAOF");

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: one confirmation per channel argument.
pub fn is_subscribe(id: CommandId) -> bool {
    matches!(id, SUBSCRIBE | PSUBSCRIBE | SSUBSCRIBE)
}

/// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: one confirmation per channel argument, or per channel
/// still subscribed when called without arguments.
pub fn is_unsubscribe(id: CommandId) -> bool {
    matches!(id, UNSUBSCRIBE | PUNSUBSCRIBE | SUNSUBSCRIBE)
}

/// [`id_of`] through the hash index, cheap enough per event (any case; `"CONFIG GET"` or
/// `"config|get"`).
pub fn by_name(name: &[u8]) -> CommandId {
    let (first, sub) = match name.iter().position(|&b| b == b' ' || b == b'|') {
        Some(p) => (name.get(..p).unwrap_or_default(), name.get(p + 1..)),
        None => (name, None),
    };
    let id = lookup(UNKNOWN, first, first.len() as u64);
    match sub {
        None => id,
        Some(_) if id == UNKNOWN => UNKNOWN,
        Some(sub) => lookup(id, sub, sub.len() as u64),
    }
}

// ------------------------------------------------------------------------------------------------
// Requests

/// The arguments of a request from `off` on, so that rules can be applied to a command nested in
/// another (`COMMAND GETKEYS AUTH pw`).
#[derive(Clone, Copy)]
struct Args<'a> {
    req: &'a Request,
    off: usize,
}

impl<'a> Args<'a> {
    fn new(req: &'a Request) -> Self {
        Args { req, off: 0 }
    }

    fn argc(self) -> u64 {
        self.req.argc.saturating_sub(self.off as u64)
    }

    /// Arguments whose prefix was kept.
    fn kept(self) -> usize {
        let n = self.req.args.len().saturating_sub(self.off);
        n.min(usize::try_from(self.argc()).unwrap_or(usize::MAX))
    }

    /// Kept prefix and full length of argument `i`.
    fn get(self, i: usize) -> Option<(&'a [u8], u64)> {
        if i >= self.kept() {
            return None;
        }
        self.req.arg(self.off.checked_add(i)?)
    }

    /// Argument `i` is exactly `word`, ASCII case-insensitive (and was kept whole).
    fn is(self, i: usize, word: &str) -> bool {
        match self.get(i) {
            Some((b, len)) => len == b.len() as u64 && b.eq_ignore_ascii_case(word.as_bytes()),
            None => false,
        }
    }

    /// Argument `i` may be `word`: right length, and its kept prefix matches. For secret rules,
    /// which must not miss a password after an `AUTH` that was cut short in capture.
    fn may_be(self, i: usize, word: &str) -> bool {
        match self.get(i) {
            Some((b, len)) => {
                len == word.len() as u64
                    && word
                        .as_bytes()
                        .get(..b.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(b))
            }
            None => false,
        }
    }

    fn shifted(self, by: usize) -> Self {
        Args {
            req: self.req,
            off: self.off.saturating_add(by),
        }
    }
}

/// Resolve a request: its command and how many leading arguments form the name (1, or 2 for a
/// known container subcommand such as `CONFIG GET`; 0 only when the request has no arguments).
///
/// As in Redis' `lookupCommand`: a container alone (`CONFIG`) is the container itself (Redis
/// rejects it on arity and counts it under `cmdstat_config`); a container with an unknown
/// subcommand is [`UNKNOWN`] with 2 name arguments, so the log names it with both words
/// (`CLIENT FOO`); Redis counts neither unknown commands nor unknown subcommands in commandstats.
/// A name cut short in capture is `UNKNOWN`.
pub fn resolve(req: &Request) -> (CommandId, usize) {
    resolve_in(Args::new(req))
}

/// [`resolve`] with a one-entry memory: a connection mostly repeats a few commands, so the
/// name is first compared byte for byte with the last one that resolved to a plain command.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resolver {
    /// The remembered name, zero-padded, so a comparison is one 16-byte compare.
    word: [u8; 16],
    len: u8,
    id: CommandId,
}

impl Resolver {
    pub fn resolve(&mut self, req: &Request) -> (CommandId, usize) {
        let a = Args::new(req);
        let name = a.get(0);
        if let Some((word, full)) = name
            && self.len > 0
            && full == u64::from(self.len)
            && word.len() == usize::from(self.len)
            && padded(word) == Some(self.word)
        {
            return (self.id, 1);
        }
        let r = resolve_in(a);
        // Only names that resolve on their own (not containers, whose subcommand decides).
        if let (id, 1) = r
            && id != UNKNOWN
            && !info(id).is_container()
            && let Some((word, _)) = name
            && let Some(w) = padded(word)
        {
            self.word = w;
            self.len = u8::try_from(word.len()).unwrap_or(0);
            self.id = id;
        }
        r
    }
}

/// `word` zero-padded to 16 bytes, if it fits.
#[inline]
fn padded(word: &[u8]) -> Option<[u8; 16]> {
    let mut w = [0u8; 16];
    w.get_mut(..word.len())?.copy_from_slice(word);
    Some(w)
}

fn resolve_in(a: Args) -> (CommandId, usize) {
    let Some((word, len)) = a.get(0) else {
        return (UNKNOWN, usize::from(a.argc() > 0));
    };
    let id = lookup(UNKNOWN, word, len);
    if id == UNKNOWN || !info(id).is_container() || a.argc() < 2 {
        return (id, 1);
    }
    match a.get(1) {
        Some((sub, len)) => match lookup(id, sub, len) {
            UNKNOWN => (UNKNOWN, 2),
            sub => (sub, 2),
        },
        None => (UNKNOWN, 1),
    }
}

/// Index (into the request's arguments, 0 = the name) of the first key, per the command's key
/// specs as Redis' `getKeysUsingKeySpecs` applies them: the lowest index any spec yields, skipping
/// `not_key` specs (shard channels) and specs only the command's code understands. MIGRATE
/// follows Redis' own `migrateGetKeys` (the `""` key form takes its keys from `KEYS`).
///
/// The index is below `req.argc`, but the argument may lie past the kept ones. Keyword searches
/// see only kept arguments, so with a cut request a keyword search is best effort.
pub fn first_key(id: CommandId, req: &Request) -> Option<usize> {
    let a = Args::new(req);
    if id == MIGRATE {
        return migrate_first_key(a);
    }
    info(id)
        .key_specs
        .iter()
        .filter(|s| s.flags & key_flag::NOT_KEY == 0)
        .filter_map(|s| spec_first_key(s, a))
        .min()
}

/// The first key of one spec (see [`spec_range`]).
fn spec_first_key(spec: &KeySpec, a: Args) -> Option<usize> {
    if let Some(i) = fixed_key(spec) {
        return u64::try_from(i).is_ok_and(|i| i < a.argc()).then_some(i);
    }
    spec_range(spec, a).and_then(|(first, _, _)| usize::try_from(first).ok())
}

/// The index of a spec's one key when it is at a fixed position (`Index(i)` and a range of one
/// key, as GET's and most commands' are): what [`spec_range`] yields for it, without the walk,
/// when `i` is below argc.
#[inline]
fn fixed_key(spec: &KeySpec) -> Option<usize> {
    match (spec.begin, spec.find) {
        (
            BeginSearch::Index(i),
            FindKeys::Range {
                lastkey: 0,
                keystep,
                ..
            },
        ) if i >= 1 && keystep >= 1 && spec.flags & key_flag::NOT_KEY == 0 => {
            usize::try_from(i).ok()
        }
        _ => None,
    }
}

/// The spec's keys as `first..=last` by `step` (Redis' bounds checks: an invalid range is a
/// syntax error and yields nothing).
fn spec_range(spec: &KeySpec, a: Args) -> Option<(i64, i64, i64)> {
    let argc = i64::try_from(a.argc()).ok()?;
    let kept = i64::try_from(a.kept()).ok()?;
    let mut first = match spec.begin {
        BeginSearch::Index(i) => i64::from(i),
        BeginSearch::Keyword { keyword, startfrom } => {
            let found = if startfrom > 0 {
                let end = argc.saturating_sub(1).min(kept);
                (i64::from(startfrom)..end).find(|&i| a.is(i as usize, keyword))
            } else {
                let start = argc.saturating_add(i64::from(startfrom)).min(kept - 1);
                (1..=start).rev().find(|&i| a.is(i as usize, keyword))
            };
            found?.saturating_add(1)
        }
        BeginSearch::Unknown => return None,
    };
    let (last, step) = match spec.find {
        FindKeys::Range {
            lastkey,
            keystep,
            limit,
        } => {
            let lastkey = i64::from(lastkey);
            let last = if lastkey >= 0 {
                first.saturating_add(lastkey)
            } else if limit <= 0 {
                argc.saturating_add(lastkey)
            } else {
                let share = argc.saturating_sub(first) / i64::from(limit);
                first.saturating_add(share.saturating_add(lastkey))
            };
            (last, i64::from(keystep))
        }
        FindKeys::Keynum {
            keynumidx,
            firstkey,
            keystep,
        } => {
            let idx = usize::try_from(first.saturating_add(i64::from(keynumidx))).ok()?;
            let (num, len) = a.get(idx)?;
            if len != num.len() as u64 {
                return None;
            }
            let numkeys = parse_i64(num)?;
            if numkeys < 0 {
                return None;
            }
            first = first.saturating_add(i64::from(firstkey));
            (
                first.saturating_add(numkeys).saturating_sub(1),
                i64::from(keystep),
            )
        }
        FindKeys::Unknown => return None,
    };
    if first < 1 || first >= argc || last < first || last >= argc || step < 1 {
        return None;
    }
    Some((first, last, step))
}

/// Redis' `string2ll`: optional `-`, digits, no leading zeros or `+`, fits an i64.
fn parse_i64(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw] [KEYS key...]
fn migrate_first_key(a: Args) -> Option<usize> {
    if a.argc() <= 3 {
        return None;
    }
    match a.get(3) {
        Some((_, len)) if len > 0 => Some(3),
        _ => {
            let k = migrate_options(a, usize::MAX).0?;
            let first = k.checked_add(1)?;
            (u64::try_from(first).ok()? < a.argc()).then_some(first)
        }
    }
}

/// Walks MIGRATE's options like `migrateCommand` does: the index of `KEYS` if present, and whether
/// argument `i` is an AUTH/AUTH2 credential.
fn migrate_options(a: Args, i: usize) -> (Option<usize>, bool) {
    let mut secret = false;
    let mut j = 6;
    while j < a.kept() {
        if a.is(j, "KEYS") {
            return (Some(j), secret);
        } else if a.may_be(j, "AUTH") {
            secret |= i == j + 1;
            j += 2;
        } else if a.may_be(j, "AUTH2") {
            secret |= i == j + 1 || i == j + 2;
            j += 3;
        } else {
            j += 1;
        }
    }
    (None, secret)
}

// ------------------------------------------------------------------------------------------------
// Blocking

/// The command may block the connection until data arrives or a timeout passes: the `blocking`
/// flag (BLPOP, BLMOVE, BZPOPMIN, ...), except that XREAD and XREADGROUP block only with a
/// `BLOCK` option; plus WAIT and WAITAOF, which Redis does not flag. (Inside MULTI nothing
/// blocks; that is the pairing's business.)
pub fn is_blocking(id: CommandId, req: &Request) -> bool {
    if id == UNKNOWN {
        return false;
    }
    if id == WAIT || id == WAITAOF {
        return true;
    }
    if !info(id).has_flag(flag::BLOCKING) {
        return false;
    }
    let start = match id {
        XREAD => 1,
        XREADGROUP => 4, // after GROUP group consumer
        _ => return true,
    };
    let a = Args::new(req);
    (start..a.kept())
        .take_while(|&i| !a.is(i, "STREAMS"))
        .any(|i| a.is(i, "BLOCK"))
}

#[cfg(test)]
mod tests;
