use super::*;
use crate::resp::{ArgSpan, Request};

/// A request with the first `keep_args` arguments kept, each cut to `keep_bytes`.
fn req_cut(args: &[&[u8]], keep_args: usize, keep_bytes: usize) -> Request {
    let mut r = Request {
        argc: args.len() as u64,
        ..Request::default()
    };
    for a in args.iter().take(keep_args) {
        let kept = a.len().min(keep_bytes);
        r.args.push(ArgSpan {
            start: r.buf.len() as u32,
            kept: kept as u32,
            len: a.len() as u64,
        });
        r.buf.extend_from_slice(&a[..kept]);
    }
    r
}

fn req(args: &[&str]) -> Request {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    req_cut(&args, usize::MAX, usize::MAX)
}

fn resolved(args: &[&str]) -> (&'static str, usize) {
    let (id, n) = resolve(&req(args));
    (name(id), n)
}

#[test]
fn resolves_commands_and_subcommands() {
    let cases: &[(&[&str], &str, usize)] = &[
        (&["GET", "k"], "GET", 1),
        (&["get", "k"], "GET", 1),
        (&["gEt", "k"], "GET", 1),
        (&["SET", "k", "v"], "SET", 1),
        (&["MSET", "a", "1", "b", "2"], "MSET", 1),
        (&["CONFIG", "GET", "maxmemory"], "CONFIG GET", 2),
        (&["config", "get", "maxmemory"], "CONFIG GET", 2),
        (&["Config", "Set", "a", "b"], "CONFIG SET", 2),
        (&["CLIENT", "SETNAME", "x"], "CLIENT SETNAME", 2),
        (&["client", "reply", "off"], "CLIENT REPLY", 2),
        (&["XINFO", "STREAM", "s"], "XINFO STREAM", 2),
        (&["OBJECT", "ENCODING", "k"], "OBJECT ENCODING", 2),
        (&["MEMORY", "USAGE", "k"], "MEMORY USAGE", 2),
        (&["XREAD", "COUNT", "1", "STREAMS", "s1", "0"], "XREAD", 1),
        (&["EVAL", "return 1", "1", "k"], "EVAL", 1),
        (&["ZUNIONSTORE", "d", "2", "a", "b"], "ZUNIONSTORE", 1),
        (
            &["MIGRATE", "h", "1", "", "0", "5000", "KEYS", "a", "b"],
            "MIGRATE",
            1,
        ),
        (
            &["GEORADIUSBYMEMBER_RO", "k", "m", "1", "km"],
            "GEORADIUSBYMEMBER_RO",
            1,
        ),
        (
            &["cluster", "count-failure-reports", "id"],
            "CLUSTER COUNT-FAILURE-REPORTS",
            2,
        ),
        (&["PING"], "PING", 1),
        // A container alone is the container: Redis rejects it on arity under cmdstat_config.
        (&["CONFIG"], "CONFIG", 1),
        // Unknown subcommand of a known container: no commandstats entry in Redis.
        (&["CONFIG", "BOGUS"], "UNKNOWN", 2),
        (&["CLIENT", "BOGUS", "LIB-NAME", "redis-py"], "UNKNOWN", 2),
        // Known from Redis 7.2 / Valkey 7.2 on (the table holds every version).
        (
            &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"],
            "CLIENT SETINFO",
            2,
        ),
        (&["HGETEX", "h", "FIELDS", "1", "f"], "HGETEX", 1),
        (&["commandlog", "get", "10", "slow"], "COMMANDLOG GET", 2),
        (&["FOO", "bar"], "UNKNOWN", 1),
        (&["config|get", "x"], "UNKNOWN", 1),
        (&["GET\0", "k"], "UNKNOWN", 1),
        (&["GET ", "k"], "UNKNOWN", 1),
        (&["GÉT", "k"], "UNKNOWN", 1),
        (&["", "k"], "UNKNOWN", 1),
        (&["GEORADIUSBYMEMBER_ROX"], "UNKNOWN", 1),
        // Not a command, even though SET's subcommand-like words exist elsewhere.
        (&["SET", "GET", "x"], "SET", 1),
    ];
    for (args, want, n) in cases {
        assert_eq!(resolved(args), (*want, *n), "{args:?}");
    }
    assert_eq!(resolve(&req(&[])), (UNKNOWN, 0));
    let long = "A".repeat(MAX_WORD_LEN + 1);
    assert_eq!(resolved(&[&long]), ("UNKNOWN", 1));
}

#[test]
fn names_cut_in_capture_are_unknown() {
    assert_eq!(resolve(&req_cut(&[b"GET", b"k"], 8, 2)).0, UNKNOWN);
    // The subcommand was not kept at all.
    let r = req_cut(&[b"CONFIG", b"GET", b"x"], 1, 64);
    assert_eq!(resolve(&r), (UNKNOWN, 1));
    let r = req_cut(&[b"CONFIG", b"GET", b"x"], 2, 64);
    assert_eq!(resolve(&r).0, CONFIG_GET);
}

#[test]
fn unknown_never_becomes_a_label() {
    assert_eq!(name(UNKNOWN), "UNKNOWN");
    assert_eq!(info(CommandId(u16::MAX)).name, "UNKNOWN");
    assert_eq!(CommandId(u16::MAX).name(), "UNKNOWN");
    assert_eq!(id_of("UNKNOWN"), UNKNOWN);
    assert_eq!(by_name(b"UNKNOWN"), UNKNOWN);
    assert_eq!(all().next(), Some(UNKNOWN));
    assert_eq!(all().count(), count());
}

#[test]
fn named_ids() {
    let cases = [
        (MULTI, "MULTI"),
        (EXEC, "EXEC"),
        (DISCARD, "DISCARD"),
        (CLIENT_REPLY, "CLIENT REPLY"),
        (HELLO, "HELLO"),
        (RESET, "RESET"),
        (QUIT, "QUIT"),
        (MONITOR, "MONITOR"),
        (PING, "PING"),
        (SUBSCRIBE, "SUBSCRIBE"),
        (SUNSUBSCRIBE, "SUNSUBSCRIBE"),
        (CONFIG_GET, "CONFIG GET"),
        (COMMAND_GETKEYSANDFLAGS, "COMMAND GETKEYSANDFLAGS"),
    ];
    for (id, n) in cases {
        assert_eq!(name(id), n);
    }
    assert!(is_subscribe(PSUBSCRIBE) && !is_subscribe(UNSUBSCRIBE));
    assert!(is_unsubscribe(PUNSUBSCRIBE) && !is_unsubscribe(SSUBSCRIBE));
    assert_eq!(id_of("config|get"), CONFIG_GET);
    assert_eq!(id_of("Config Get"), CONFIG_GET);
    assert_eq!(by_name(b"config|get"), CONFIG_GET);
    assert_eq!(by_name(b"CONFIG GET"), CONFIG_GET);
    assert_eq!(by_name(b"CONFIG NOPE"), UNKNOWN);
    assert_eq!(by_name(b"NOPE GET"), UNKNOWN);
    assert_eq!(by_name(b"get"), id_of("GET"));
    assert_eq!(WAITAOF, id_of("WAITAOF"));
}

#[test]
fn arity() {
    let get = info(id_of("GET"));
    assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
    let mset = info(id_of("MSET"));
    assert!(mset.arity_ok(3) && mset.arity_ok(5) && !mset.arity_ok(2));
    assert!(info(id_of("CONFIG")).is_container());
    assert_eq!(info(CONFIG_GET).parent, id_of("CONFIG"));
    assert!(info(id_of("BLPOP")).has_flag(flag::BLOCKING));
    assert!(info(id_of("GET")).acl & acl::READ != 0);
}

fn key_of(args: &[&str]) -> Option<usize> {
    let r = req(args);
    first_key(resolve(&r).0, &r)
}

#[test]
fn first_keys() {
    let cases: &[(&[&str], Option<usize>)] = &[
        (&["GET", "k"], Some(1)),
        (&["SET", "k", "v"], Some(1)),
        (&["MSET", "a", "1", "b", "2"], Some(1)),
        (&["DEL", "a", "b"], Some(1)),
        (&["CONFIG", "GET", "x"], None),
        (&["PING"], None),
        (&["GET"], None), // arity error: no key
        (&["XREAD", "COUNT", "1", "STREAMS", "s1", "0"], Some(4)),
        (&["xread", "streams", "s1", "s2", "0", "0"], Some(2)),
        (&["XREAD", "BLOCK", "0", "STREAMS", "s1", "$"], Some(4)),
        (&["XREAD", "COUNT", "1"], None),
        (&["XREAD", "COUNT", "1", "STREAMS"], None),
        (
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "COUNT",
                "1",
                "STREAMS",
                "s",
                ">",
            ],
            Some(7),
        ),
        (&["EVAL", "return 1", "1", "k"], Some(3)),
        (&["EVAL", "return 1", "0"], None),
        (&["EVAL", "return 1", "2", "k"], None), // more keys than arguments: syntax error
        (&["EVAL", "return 1", "x", "k"], None),
        (&["EVAL", "return 1", "-1", "k"], None),
        (&["EVAL", "return 1", "01", "k"], None),
        (&["EVALSHA", "abc", "1", "k"], Some(3)),
        (&["FCALL", "f", "2", "a", "b", "x"], Some(3)),
        (&["ZUNIONSTORE", "d", "2", "a", "b"], Some(1)),
        (&["ZUNION", "2", "a", "b"], Some(2)),
        (&["ZINTERCARD", "2", "a", "b"], Some(2)),
        (&["LMPOP", "2", "a", "b", "LEFT"], Some(2)),
        (&["BLMPOP", "0", "2", "a", "b", "LEFT"], Some(3)),
        (
            &["MIGRATE", "h", "1", "", "0", "5000", "KEYS", "a", "b"],
            Some(7),
        ),
        (&["MIGRATE", "h", "1", "k", "0", "5000"], Some(3)),
        (
            &["MIGRATE", "h", "1", "k", "0", "5000", "COPY", "REPLACE"],
            Some(3),
        ),
        // The password "keys" is not the KEYS option.
        (
            &[
                "MIGRATE", "h", "1", "", "0", "5000", "AUTH", "keys", "KEYS", "a",
            ],
            Some(9),
        ),
        (
            &[
                "MIGRATE", "h", "1", "", "0", "5000", "AUTH2", "keys", "keys", "KEYS", "a",
            ],
            Some(10),
        ),
        (&["MIGRATE", "h", "1", "", "0", "5000"], None),
        (&["MIGRATE", "h", "1", "", "0", "5000", "KEYS"], None),
        (&["OBJECT", "ENCODING", "k"], Some(2)),
        (&["MEMORY", "USAGE", "k"], Some(2)),
        (&["XINFO", "STREAM", "s"], Some(2)),
        (&["XGROUP", "CREATE", "s", "g", "$"], Some(2)),
        (
            &["GEORADIUS", "k", "0", "0", "1", "km", "STORE", "d"],
            Some(1),
        ),
        (&["SORT", "k", "STORE", "d"], Some(1)),
        (&["BITOP", "AND", "d", "a", "b"], Some(2)),
        (&["LMOVE", "a", "b", "LEFT", "RIGHT"], Some(1)),
        (&["SPUBLISH", "ch", "msg"], None), // shard channels are not keys
        (&["SSUBSCRIBE", "ch"], None),
        (&["PUBLISH", "ch", "msg"], None),
        (&["FOO", "k"], None),
        (&["CONFIG", "BOGUS", "k"], None),
    ];
    for (args, want) in cases {
        assert_eq!(key_of(args), *want, "{args:?}");
    }
}

#[test]
fn first_key_with_cut_arguments() {
    // The key's index is known even if the key itself was not kept.
    let r = req_cut(&[b"GET", b"k"], 1, 64);
    assert_eq!(first_key(id_of("GET"), &r), Some(1));
    // A keyword past the kept arguments cannot be found.
    let r = req_cut(&[b"XREAD", b"COUNT", b"1", b"STREAMS", b"s", b"0"], 3, 64);
    assert_eq!(first_key(XREAD, &r), None);
    // A keyword cut short is not the keyword.
    let r = req_cut(&[b"XREAD", b"COUNT", b"1", b"STREAMS", b"s", b"0"], 8, 4);
    assert_eq!(first_key(XREAD, &r), None);
    // numkeys not kept.
    let r = req_cut(&[b"EVAL", b"s", b"1", b"k"], 2, 64);
    assert_eq!(first_key(id_of("EVAL"), &r), None);
}

fn secrets(args: &[&str]) -> Vec<usize> {
    let r = req(args);
    let id = resolve(&r).0;
    (0..args.len())
        .filter(|&i| is_secret_arg(id, &r, i))
        .collect()
}

#[test]
fn secret_arguments() {
    let cases: &[(&[&str], &[usize])] = &[
        (&["AUTH", "pw"], &[1]),
        (&["auth", "user", "pw"], &[1, 2]),
        (
            &["HELLO", "3", "AUTH", "user", "pw", "SETNAME", "n"],
            &[3, 4],
        ),
        (&["hello", "3", "auth", "user", "pw"], &[3, 4]),
        (&["HELLO", "3", "SETNAME", "n"], &[]),
        (&["HELLO", "3"], &[]),
        (&["HELLO", "AUTH", "user", "pw"], &[2, 3]),
        (
            &[
                "MIGRATE", "h", "1", "", "0", "5000", "AUTH", "pw", "KEYS", "a", "b",
            ],
            &[7],
        ),
        (
            &[
                "MIGRATE", "h", "1", "", "0", "5000", "AUTH2", "u", "pw", "KEYS", "a",
            ],
            &[7, 8],
        ),
        (
            &[
                "MIGRATE", "h", "1", "k", "0", "5000", "COPY", "REPLACE", "auth", "pw",
            ],
            &[9],
        ),
        (&["MIGRATE", "h", "1", "k", "0", "5000"], &[]),
        (
            &["MIGRATE", "h", "1", "", "0", "5000", "KEYS", "auth", "x"],
            &[],
        ),
        (&["CONFIG", "SET", "requirepass", "pw"], &[3]),
        (
            &[
                "CONFIG",
                "SET",
                "maxmemory",
                "1",
                "REQUIREPASS",
                "a",
                "masterauth",
                "b",
                "MasterUser",
                "u",
            ],
            &[5, 7, 9],
        ),
        (&["CONFIG", "SET", "tls-key-file-pass", "x"], &[3]),
        (&["CONFIG", "SET", "tls-client-key-file-pass", "x"], &[3]),
        (&["CONFIG", "SET", "requirepass"], &[]),
        (&["CONFIG", "SET", "maxmemory", "requirepass"], &[]),
        (&["CONFIG", "GET", "requirepass", "masterauth"], &[]),
        (
            &[
                "ACL",
                "SETUSER",
                "bob",
                "on",
                ">pw",
                "<old",
                "#abc",
                "!def",
                "~*",
                "+@all",
                "resetpass",
                "nopass",
            ],
            &[4, 5, 6, 7],
        ),
        (&["ACL", "SETUSER", ">notarule"], &[]), // the user name
        (&["ACL", "GETUSER", "bob"], &[]),
        (&["COMMAND", "GETKEYS", "AUTH", "pw"], &[3]),
        (
            &["COMMAND", "GETKEYS", "CONFIG", "SET", "requirepass", "x"],
            &[5],
        ),
        (
            &[
                "COMMAND",
                "GETKEYSANDFLAGS",
                "MIGRATE",
                "h",
                "1",
                "",
                "0",
                "1",
                "AUTH",
                "pw",
                "KEYS",
                "a",
            ],
            &[9],
        ),
        (
            &["COMMAND", "GETKEYS", "COMMAND", "GETKEYS", "AUTH", "pw"],
            &[5],
        ),
        (&["GET", "auth"], &[]),
        (&["SET", "AUTH", "requirepass"], &[]),
        (&["FOO", "AUTH", "x", "y"], &[]),
    ];
    for (args, want) in cases {
        assert_eq!(secrets(args), *want, "{args:?}");
    }
}

#[test]
fn secrets_behind_keywords_cut_in_capture() {
    let check = |args: &[&[u8]], id: CommandId, want: &[usize]| {
        let r = req_cut(args, 64, 2);
        let got: Vec<usize> = (0..args.len())
            .filter(|&i| is_secret_arg(id, &r, i))
            .collect();
        assert_eq!(got, want, "{args:?}");
    };
    check(&[b"HELLO", b"3", b"AUTH", b"user", b"pw"], HELLO, &[3, 4]);
    check(
        &[b"CONFIG", b"SET", b"requirepass", b"pw"],
        CONFIG_SET,
        &[3],
    );
    check(&[b"CONFIG", b"SET", b"maxmemory", b"1"], CONFIG_SET, &[]);
    check(
        &[
            b"MIGRATE", b"h", b"1", b"k", b"0", b"1", b"AUTH2", b"u", b"pw",
        ],
        MIGRATE,
        &[7, 8],
    );
    // Nothing kept of a rule: assume it is a password.
    let r = req_cut(&[b"ACL", b"SETUSER", b"bob", b">pw", b""], 64, 0);
    assert!(is_secret_arg(ACL_SETUSER, &r, 3));
    assert!(!is_secret_arg(ACL_SETUSER, &r, 4));
    // Out of range indices are not secrets and do not panic.
    assert!(!is_secret_arg(AUTH, &req(&["AUTH", "pw"]), 2));
    assert!(!is_secret_arg(AUTH, &req(&["AUTH", "pw"]), usize::MAX));
}

fn reply_secret(args: &[&str]) -> bool {
    let r = req(args);
    reply_is_secret(resolve(&r).0, &r)
}

#[test]
fn secret_replies() {
    let cases: &[(&[&str], bool)] = &[
        (&["ACL", "GETUSER", "bob"], true),
        (&["acl", "list"], true),
        (&["ACL", "WHOAMI"], false),
        (&["ACL", "USERS"], false),
        (&["CONFIG", "GET", "maxmemory"], false),
        (&["CONFIG", "GET", "*memory*"], false),
        (&["CONFIG", "GET", "save"], false),
        (&["CONFIG", "GET", "port"], false),
        (&["CONFIG", "GET", "*"], true),
        (&["CONFIG", "GET", "*pass*"], true),
        (&["CONFIG", "GET", "master*"], true),
        (&["CONFIG", "GET", "REQUIREPASS"], true),
        (&["CONFIG", "GET", "requirepas?"], true),
        (&["CONFIG", "GET", "[rq]equirepass"], true),
        (&["CONFIG", "GET", "[^x]equirepass"], true),
        (&["CONFIG", "GET", "[^r]equirepass"], false),
        (&["CONFIG", "GET", "[a-z]asterauth"], true),
        (&["CONFIG", "GET", "maxmemory", "masteruser"], true),
        (&["CONFIG", "GET", "tls*"], true),
        (&["CONFIG", "GET", "requirepass\\"], false),
        (&["CONFIG", "GET", "require\\pass"], true),
        (&["CONFIG", "GET", "*auth"], true),
        (&["CONFIG", "GET", "*user"], true),
        (&["CONFIG", "GET", "a*"], false),
        (&["CONFIG", "SET", "requirepass", "x"], false),
        (&["GET", "requirepass"], false),
    ];
    for (args, want) in cases {
        assert_eq!(reply_secret(args), *want, "{args:?}");
    }
    // A pattern not kept whole, or not kept at all, could match anything.
    let r = req_cut(&[b"CONFIG", b"GET", b"maxmemory"], 64, 3);
    assert!(reply_is_secret(CONFIG_GET, &r));
    let r = req_cut(&[b"CONFIG", b"GET", b"maxmemory", b"port"], 3, 64);
    assert!(reply_is_secret(CONFIG_GET, &r));
}

#[test]
fn glob() {
    let cases: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("*", "", true),
        ("*", "abc", true),
        ("a*c", "abbbc", true),
        ("a*c", "abbb", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*a*b*c*", "xaybzc", true),
        ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ("[abc]x", "bx", true),
        ("[^abc]x", "bx", false),
        ("[a-c]x", "Bx", true),
        ("[c-a]x", "bx", true),
        ("[\\]]", "]", true),
        ("[abc", "c", true),
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("ABC", "abc", true),
        ("abc\\", "abc\\", true),
    ];
    for (p, t, want) in cases {
        assert_eq!(
            glob_match(p.as_bytes(), t.as_bytes()),
            *want,
            "{p:?} ~ {t:?}"
        );
    }
}

#[test]
fn blocking() {
    let cases: &[(&[&str], bool)] = &[
        (&["BLPOP", "k", "0"], true),
        (&["BRPOPLPUSH", "a", "b", "0"], true),
        (&["BZPOPMIN", "k", "0"], true),
        (&["BLMOVE", "a", "b", "LEFT", "RIGHT", "0"], true),
        (&["XREAD", "STREAMS", "s", "0"], false),
        (&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], true),
        (
            &["xread", "count", "1", "block", "100", "streams", "s", "$"],
            true,
        ),
        (&["XREAD", "STREAMS", "block", "0"], false), // a stream named "block"
        (
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "0",
                "STREAMS",
                "s",
                ">",
            ],
            true,
        ),
        (
            &["XREADGROUP", "GROUP", "BLOCK", "c", "STREAMS", "s", ">"],
            false,
        ),
        (&["WAIT", "1", "0"], true),
        (&["GET", "k"], false),
        (&["LPOP", "k"], false),
        (&["FOO"], false),
    ];
    for (args, want) in cases {
        let r = req(args);
        assert_eq!(is_blocking(resolve(&r).0, &r), *want, "{args:?}");
    }
}

#[test]
fn hash_index_is_sound() {
    const { assert!(MAX_PROBE <= 8, "probe chains too long") };
    // Every entry resolves to itself from its own name, in any case.
    for id in all().skip(1) {
        let e = info(id);
        let words: Vec<String> = e.name.split(' ').map(str::to_ascii_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(resolve(&req(&words)), (id, words.len()), "{}", e.name);
        assert_eq!(id_of(e.name), id);
        assert_eq!(by_name(e.name.as_bytes()), id);
        for sub in e.subcommands {
            assert_eq!(info(*sub).parent, id, "{}", e.name);
        }
    }
}

/// The generated table matches the checked-in data file entry for entry.
#[test]
fn table_matches_data_file() {
    let data: serde_json::Value = serde_json::from_str(include_str!("../../data/commands.json"))
        .expect("data/commands.json parses");
    let servers = data["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), SERVERS.len());
    for (json, (label, n)) in servers.iter().zip(SERVERS) {
        assert_eq!(json["name"].as_str(), Some(label));
        assert_eq!(json["command_count"].as_u64(), Some(n as u64));
    }
    let entries = data["entries"].as_array().expect("entries");
    assert_eq!(count(), entries.len() + 1, "one id per entry plus UNKNOWN");
    let top = entries
        .iter()
        .filter(|e| !e["name"].as_str().unwrap_or_default().contains(' '))
        .count();
    assert_eq!(top, COMMAND_COUNT);
    // Each server's top-level commands in the merged table are exactly its own COMMAND COUNT
    // (Redis 7.0: 240), and the table holds at least as many as the largest of them.
    for (i, (label, n)) in SERVERS.iter().enumerate() {
        let known = all()
            .skip(1)
            .filter(|id| info(*id).parent == UNKNOWN && info(*id).servers & (1 << i) != 0)
            .count();
        assert_eq!(
            known, *n,
            "{label}: entries known to it vs its COMMAND COUNT"
        );
        assert!(COMMAND_COUNT >= *n);
        if label.starts_with("redis-7.0.") {
            assert_eq!(*n, 240, "COMMAND COUNT of Redis 7.0");
        }
    }
    let bits = |list: &serde_json::Value, all: &[(&str, u32)]| -> u32 {
        let names: Vec<&str> = list
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for n in &names {
            assert!(all.iter().any(|(a, _)| a == n), "flag {n} missing");
        }
        all.iter()
            .filter(|(n, _)| names.contains(n))
            .fold(0, |acc, (_, b)| acc | b)
    };
    for e in entries {
        let n = e["name"].as_str().expect("name");
        let id = id_of(n);
        assert_ne!(id, UNKNOWN, "{n} missing from the table");
        let i = info(id);
        assert_eq!(i.name, n);
        let known_to: Vec<&str> = e["in"]
            .as_array()
            .expect("in")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for (label, _) in SERVERS {
            assert_eq!(
                i.known_to(label),
                known_to.contains(&label),
                "{n} in {label}"
            );
        }
        assert_eq!(
            i64::from(i.arity),
            e["arity"].as_i64().expect("arity"),
            "{n}"
        );
        assert_eq!(
            i64::from(i.first_key),
            e["first_key"].as_i64().expect("first_key"),
            "{n}"
        );
        assert_eq!(
            i64::from(i.last_key),
            e["last_key"].as_i64().expect("last_key"),
            "{n}"
        );
        assert_eq!(
            i64::from(i.key_step),
            e["key_step"].as_i64().expect("key_step"),
            "{n}"
        );
        assert_eq!(i.flags, bits(&e["flags"], &flag::ALL), "{n}");
        assert_eq!(i.acl, bits(&e["acl"], &acl::ALL), "{n}");
        let specs = e["key_specs"].as_array().expect("key_specs");
        assert_eq!(i.key_specs.len(), specs.len(), "{n}");
        for (spec, json) in i.key_specs.iter().zip(specs) {
            let kf: Vec<(&str, u32)> = key_flag::ALL
                .iter()
                .map(|(s, b)| (*s, u32::from(*b)))
                .collect();
            assert_eq!(u32::from(spec.flags), bits(&json["flags"], &kf), "{n}");
            let begin = json["begin_search"]["type"].as_str();
            match spec.begin {
                BeginSearch::Index(p) => {
                    assert_eq!(begin, Some("index"));
                    assert_eq!(
                        json["begin_search"]["spec"]["index"].as_i64(),
                        Some(i64::from(p)),
                        "{n}"
                    );
                }
                BeginSearch::Keyword { keyword, .. } => {
                    assert_eq!(begin, Some("keyword"));
                    assert_eq!(
                        json["begin_search"]["spec"]["keyword"].as_str(),
                        Some(keyword),
                        "{n}"
                    );
                }
                BeginSearch::Unknown => assert_eq!(begin, Some("unknown")),
            }
        }
    }
}

/// Whatever arrives, the lookups neither panic nor return out-of-range indices.
#[test]
fn arbitrary_requests_do_not_panic() {
    const WORDS: &[&[u8]] = &[
        b"GET",
        b"CONFIG",
        b"GET",
        b"SET",
        b"XREAD",
        b"XREADGROUP",
        b"STREAMS",
        b"BLOCK",
        b"EVAL",
        b"MIGRATE",
        b"KEYS",
        b"AUTH",
        b"AUTH2",
        b"HELLO",
        b"ACL",
        b"SETUSER",
        b"COMMAND",
        b"GETKEYS",
        b"requirepass",
        b"*",
        b"[",
        b"\\",
        b"[^",
        b"0",
        b"1",
        b"2",
        b"-1",
        b"99999999999999999999",
        b"",
        b">pw",
        b"ZUNIONSTORE",
        b"GEORADIUS",
        b"STORE",
        b"SORT",
        b"\xff\xfe",
        b"LMPOP",
        b"BLMPOP",
        b"FCALL",
        b"SPUBLISH",
        b"WAIT",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let n = (next() % 12) as usize;
        let args: Vec<&[u8]> = (0..n)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        let mut r = req_cut(&args, (next() % 14) as usize, (next() % 12) as usize);
        if next() % 4 == 0 {
            r.argc = r.argc.saturating_add(next() % 3); // arguments beyond the kept ones
        }
        match next() % 50 {
            0 => r.argc = u64::MAX,
            1 => r.argc = i64::MAX as u64,
            _ => {}
        }
        let (id, k) = resolve(&r);
        assert!(k as u64 <= r.argc);
        for id in [
            id,
            MIGRATE,
            CONFIG_GET,
            CONFIG_SET,
            HELLO,
            XREAD,
            id_of("EVAL"),
            id_of("ZUNIONSTORE"),
        ] {
            if let Some(i) = first_key(id, &r) {
                assert!((i as u64) < r.argc && i > 0);
            }
            for i in 0..16 {
                is_secret_arg(id, &r, i);
            }
            reply_is_secret(id, &r);
            is_blocking(id, &r);
        }
    }
}

/// `cargo test --release -- --ignored --nocapture lookup_speed`
#[test]
#[ignore = "timing, run by hand in release mode"]
fn lookup_speed() {
    let reqs: Vec<Request> = [
        &["GET", "k"][..],
        &["set", "k", "v"],
        &["HGETALL", "h"],
        &["config", "get", "maxmemory"],
        &["CLIENT", "SETNAME", "x"],
        &["georadiusbymember_ro", "k"],
        &["NOSUCHCOMMAND"],
        &["ZADD", "z", "1", "m"],
    ]
    .iter()
    .map(|a| req(a))
    .collect();
    let rounds = 2_000_000;
    let t = std::time::Instant::now();
    let mut sum = 0usize;
    for _ in 0..rounds {
        for r in &reqs {
            let (id, n) = resolve(std::hint::black_box(r));
            sum = sum.wrapping_add(id.index() + n);
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * reqs.len()) as f64;
    println!("resolve: {per:.1} ns per request (checksum {sum}, max probe {MAX_PROBE})");
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        for r in &reqs {
            let (id, _) = resolve(std::hint::black_box(r));
            sum = sum.wrapping_add(first_key(id, r).unwrap_or(0));
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * reqs.len()) as f64;
    println!("resolve + first_key: {per:.1} ns per request (checksum {sum})");
}

#[test]
fn resolver_memory_never_changes_the_answer() {
    // Sequences that would trip a careless cache: case changes, containers after plain commands,
    // a cut name with the remembered length, prefixes and extensions of the remembered name.
    let cases: &[&[&str]] = &[
        &["set", "k", "v"],
        &["set", "k", "v"],
        &["SET", "k", "v"],
        &["setex", "k", "1", "v"],
        &["se"],
        &["config", "get", "x"],
        &["get", "k"],
        &["config", "set", "x", "y"],
        &["CONFIG"],
        &["client", "reply", "off"],
        &["get", "k"],
        &["nosuchcmd"],
        &["get"],
        &["averyveryverylongcommandname"],
        &["get", "k"],
    ];
    let mut r = Resolver::default();
    for args in cases {
        let q = req(args);
        assert_eq!(r.resolve(&q), resolve(&q), "{args:?}");
    }
    // A name cut in capture with the remembered length is still UNKNOWN.
    let mut r = Resolver::default();
    let _ = r.resolve(&req(&["get", "k"]));
    let cut = req_cut(&[b"get", b"k"], 2, 2);
    assert_eq!(r.resolve(&cut), resolve(&cut));
}
