//! Every key of a command, per its key specs, as Redis' `getKeysFromCommandWithSpecs` finds
//! them (the hot-key analytics need all of them; the log shows only the first, [`first_key`]).
//!
//! Spec by spec, in the table's order, duplicates kept (`MSET a 1 a 2` touches `a` twice);
//! `not_key` specs (shard channels) skipped; specs only the command's own code understands are
//! handled as that code does for SORT (`STORE dest`) and MIGRATE (`KEYS k...`). Only kept
//! arguments can be reported: a key past the request's kept prefix ends the walk.
//!
//! [`first_key`]: super::first_key

use super::{Args, CommandId, MIGRATE, fixed_key, info, key_flag, spec_range};
use crate::resp::Request;

/// `SORT` (not `SORT_RO`, which never stores): its STORE destination is found by code.
const SORT: CommandId = super::known("SORT");

/// Calls `f` with the index (into the request's arguments, 0 = the name) of each key of `req`,
/// at most `max` times. Indexes are of kept arguments only.
pub fn keys(id: CommandId, req: &Request, max: usize, mut f: impl FnMut(usize)) {
    if max == 0 {
        return;
    }
    let a = Args::new(req);
    let mut left = max;
    let mut emit = |i: usize| {
        if left == 0 || i >= a.kept() {
            return false;
        }
        left -= 1;
        f(i);
        true
    };
    if id == MIGRATE {
        migrate_keys(a, &mut emit);
        return;
    }
    let specs = info(id).key_specs;
    // Most commands: one key at a fixed index (GET, SET, INCR, HSET, ...).
    if id != SORT
        && let [spec] = specs
        && let Some(i) = fixed_key(spec)
    {
        if u64::try_from(i).is_ok_and(|i| i < a.argc()) {
            emit(i);
        }
        return;
    }
    for spec in specs {
        if spec.flags & key_flag::NOT_KEY != 0 {
            continue;
        }
        let Some((first, last, step)) = spec_range(spec, a) else {
            continue;
        };
        let mut i = first;
        while i <= last {
            let Ok(idx) = usize::try_from(i) else { break };
            if !emit(idx) {
                return;
            }
            i = i.saturating_add(step);
        }
    }
    if id == SORT {
        if let Some(dest) = sort_store(a) {
            emit(dest);
        }
    }
}

/// Redis' `sortGetKeys`: LIMIT skips two arguments, GET and BY one; the last `STORE dest` wins.
fn sort_store(a: Args) -> Option<usize> {
    let argc = usize::try_from(a.argc()).unwrap_or(usize::MAX);
    let mut store = None;
    let mut i = 2;
    while i < argc.min(a.kept()) {
        if a.is(i, "LIMIT") {
            i += 2;
        } else if a.is(i, "GET") || a.is(i, "BY") {
            i += 1;
        } else if a.is(i, "STORE") && i + 1 < argc {
            // Like Redis, the destination is not skipped: `STORE STORE d` stores into `d`.
            store = Some(i + 1);
        }
        i += 1;
    }
    store
}

/// MIGRATE host port key|"" db timeout [...] [KEYS key...]: the one key, or every key after
/// `KEYS` when the key argument is empty.
fn migrate_keys(a: Args, emit: &mut impl FnMut(usize) -> bool) {
    if let Some(k) = super::migrate_first_key(a) {
        if k == 3 {
            emit(3);
            return;
        }
        let argc = usize::try_from(a.argc()).unwrap_or(usize::MAX);
        for i in k..argc {
            if !emit(i) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::commands::resolve;
    use crate::resp::ArgSpan;

    fn req(args: &[&str], keep_args: usize) -> Request {
        let mut r = Request {
            argc: args.len() as u64,
            ..Request::default()
        };
        for a in args.iter().take(keep_args) {
            r.args.push(ArgSpan {
                start: r.buf.len() as u32,
                kept: a.len() as u32,
                len: a.len() as u64,
            });
            r.buf.extend_from_slice(a.as_bytes());
        }
        r
    }

    fn keys_of(args: &[&str], keep_args: usize, max: usize) -> Vec<String> {
        let r = req(args, keep_args);
        let (id, _) = resolve(&r);
        let mut out = Vec::new();
        keys(id, &r, max, |i| {
            let (b, _) = r.arg(i).expect("a kept argument");
            out.push(String::from_utf8_lossy(b).into_owned());
        });
        out
    }

    #[rstest]
    #[case::get(&["GET", "k"], &["k"])]
    #[case::set(&["SET", "k", "v", "EX", "10"], &["k"])]
    #[case::mget(&["MGET", "a", "b", "c"], &["a", "b", "c"])]
    #[case::mset_step_2(&["MSET", "a", "1", "b", "2", "c", "3"], &["a", "b", "c"])]
    #[case::msetnx(&["MSETNX", "a", "1", "b", "2"], &["a", "b"])]
    #[case::del(&["DEL", "a", "b"], &["a", "b"])]
    #[case::exists(&["EXISTS", "a", "b", "a"], &["a", "b", "a"])]
    #[case::eval_numkeys(&["EVAL", "return 1", "2", "k1", "k2", "arg"], &["k1", "k2"])]
    #[case::eval_no_keys(&["EVAL", "return 1", "0", "arg"], &[])]
    #[case::eval_bad_numkeys(&["EVAL", "return 1", "x", "k"], &[])]
    #[case::eval_too_many(&["EVAL", "return 1", "5", "k"], &[])]
    #[case::fcall(&["FCALL", "f", "1", "k", "a"], &["k"])]
    #[case::xread_streams(&["XREAD", "COUNT", "1", "STREAMS", "s1", "s2", "0", "0"], &["s1", "s2"])]
    #[case::xread_block(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], &["s"])]
    #[case::xreadgroup(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "s2", ">", ">"], &["s1", "s2"])]
    #[case::zunionstore(&["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"], &["d", "a", "b"])]
    #[case::zunion(&["ZUNION", "2", "a", "b"], &["a", "b"])]
    #[case::sort_store(&["SORT", "src", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "STORE", "dst"], &["src", "dst"])]
    #[case::sort_last_store_wins(&["SORT", "src", "STORE", "d1", "STORE", "d2"], &["src", "d2"])]
    #[case::sort_limit_skips(&["SORT", "src", "LIMIT", "STORE", "x", "ASC"], &["src"])]
    #[case::sort_ro(&["SORT_RO", "src", "BY", "x"], &["src"])]
    #[case::lmove(&["LMOVE", "a", "b", "LEFT", "RIGHT"], &["a", "b"])]
    #[case::blpop(&["BLPOP", "a", "b", "0"], &["a", "b"])]
    #[case::rename(&["RENAME", "a", "b"], &["a", "b"])]
    #[case::object(&["OBJECT", "ENCODING", "k"], &["k"])]
    #[case::migrate_one(&["MIGRATE", "h", "1", "k", "0", "5000"], &["k"])]
    #[case::migrate_keys(&["MIGRATE", "h", "1", "", "0", "5000", "KEYS", "a", "b"], &["a", "b"])]
    #[case::spublish_not_key(&["SPUBLISH", "ch", "m"], &[])]
    #[case::ping(&["PING"], &[])]
    #[case::unknown(&["NOPE", "k"], &[])]
    fn every_key(#[case] args: &[&str], #[case] want: &[&str]) {
        assert_eq!(keys_of(args, usize::MAX, usize::MAX), want);
    }

    #[test]
    fn bounded_by_max_and_by_kept_arguments() {
        let args = ["MGET", "a", "b", "c", "d"];
        assert_eq!(keys_of(&args, usize::MAX, 2), ["a", "b"]);
        // Only three arguments kept: the keys past them are not reported.
        assert_eq!(keys_of(&args, 3, usize::MAX), ["a", "b"]);
        assert!(keys_of(&args, usize::MAX, 0).is_empty());
    }
}
