//! Cgroups: the kernel names a process's cgroup by its id (the inode number of its directory in
//! the cgroup v2 file system); the path, found by walking that file system, tells the container,
//! pod or systemd unit.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// Paths remembered at most (beyond it the cache starts over: a walk refills what is in use).
const MAX_KNOWN: usize = 8192;
/// Directories visited per walk at most, and how deep.
const MAX_WALK: usize = 200_000;
const MAX_DEPTH: usize = 32;
/// An id not found is not looked for again for this long (a cgroup that is gone stays gone).
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Ids remembered as missing at most.
const MAX_MISSING: usize = 4096;

pub struct Cgroups {
    /// Mount point of the cgroup v2 file system, and the cgroup path it shows (not `/` inside
    /// a cgroup namespace or a bind mount of a subtree).
    root: Option<(PathBuf, String)>,
    known: HashMap<u64, Arc<str>>,
    missing: HashMap<u64, Instant>,
}

impl Cgroups {
    pub fn new() -> Self {
        Cgroups {
            root: cgroup2_mount(),
            known: HashMap::new(),
            missing: HashMap::new(),
        }
    }

    /// The path of cgroup `id`, or `None` when it is not (or no longer) there.
    pub fn path(&mut self, id: u64) -> Option<Arc<str>> {
        if let Some(p) = self.known.get(&id) {
            return Some(p.clone());
        }
        if self
            .missing
            .get(&id)
            .is_some_and(|t| t.elapsed() < NEGATIVE_TTL)
        {
            return None;
        }
        self.walk(id);
        match self.known.get(&id) {
            Some(p) => Some(p.clone()),
            None => {
                if self.missing.len() >= MAX_MISSING {
                    self.missing.clear();
                }
                self.missing.insert(id, Instant::now());
                None
            }
        }
    }

    /// Walks the hierarchy until `id` is found, remembering what it passes.
    fn walk(&mut self, id: u64) {
        let Some((mount, prefix)) = &self.root else {
            return;
        };
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        let mut stack = vec![(mount.clone(), prefix.clone(), 0usize)];
        let mut visited = 0;
        while let Some((dir, path, depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_WALK {
                return;
            }
            let Ok(md) = fs::metadata(&dir) else {
                continue;
            };
            let ino = md.ino();
            if self.known.len() < MAX_KNOWN || ino == id {
                self.known
                    .entry(ino)
                    .or_insert_with(|| Arc::from(path.as_str()));
            }
            if ino == id {
                return;
            }
            if depth >= MAX_DEPTH {
                continue;
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name();
                    let Some(name) = name.to_str() else {
                        continue;
                    };
                    let child = if path == "/" {
                        format!("/{name}")
                    } else {
                        format!("{path}/{name}")
                    };
                    stack.push((e.path(), child, depth + 1));
                }
            }
        }
    }
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::new()
    }
}

/// The cgroup v2 mount from /proc/self/mountinfo: `id parent maj:min root mountpoint … - cgroup2 …`.
fn cgroup2_mount() -> Option<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let cols: Vec<&str> = pre.split_whitespace().collect();
        let (root, mount) = (cols.get(3)?, cols.get(4)?);
        return Some((PathBuf::from(unescape(mount)), unescape(root)));
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a cgroup path says about the process in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `docker://ID`, `containerd://ID`, `cri-o://ID`, `podman://ID`, a bare ID (64 hex digits
    /// whose runtime the path does not name), else the innermost systemd unit
    /// (`redis-server.service`, `session-3.scope`).
    pub container: Option<String>,
    /// Kubernetes pod UID.
    pub pod: Option<String>,
}

/// Recognises the layouts of docker, containerd and CRI-O (systemd and cgroupfs drivers),
/// podman, Kubernetes pods and systemd units.
pub fn parse(path: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut unit = None;
    let mut prev = "";
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        // containerd's systemd layout: `kubepods-…-pod<uid>.slice:cri-containerd:<id>`.
        for part in comp.split(':') {
            if let Some(uid) = pod_uid(part) {
                p.pod = Some(uid);
            }
        }
        if let Some(c) = container_id(comp, prev) {
            p.container = Some(c);
        }
        if comp.ends_with(".service") || comp.ends_with(".scope") {
            unit = Some(comp);
        }
        prev = comp;
    }
    if p.container.is_none() {
        p.container = unit.map(str::to_string);
    }
    p
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

fn container_id(comp: &str, prev: &str) -> Option<String> {
    let parts: Vec<&str> = comp.split(':').collect();
    if let [_, runtime, id] = parts[..] {
        if is_id(id) {
            return Some(format!("{}://{id}", runtime_name(runtime)?));
        }
    }
    if let Some(s) = comp.strip_suffix(".scope") {
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = s.strip_prefix(prefix) {
                // `crio-conmon-<id>`, `libpod-conmon-<id>`: the runtime's monitor, not the
                // container; they fail the id check.
                if is_id(id) {
                    return Some(format!("{runtime}://{id}"));
                }
            }
        }
        return None;
    }
    if is_id(comp) {
        // cgroupfs layouts: `/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`.
        return Some(if prev == "docker" {
            format!("docker://{comp}")
        } else {
            comp.to_string()
        });
    }
    None
}

fn runtime_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "docker" => "docker",
        "cri-containerd" => "containerd",
        "crio" => "cri-o",
        "libpod" => "podman",
        _ => return None,
    })
}

/// `kubepods-burstable-pod<uid with _>.slice`, `kubepods-pod<uid>.slice` or `pod<uid>`.
fn pod_uid(comp: &str) -> Option<String> {
    let raw = if let Some(s) = comp.strip_suffix(".slice") {
        if !s.starts_with("kubepods") {
            return None;
        }
        s.rsplit_once("-pod")?.1
    } else {
        comp.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    let ok = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f2a9c0d5b7e4e8f9a1b2c3d4e5f60718293a4b5c6d7e8f9012345678abcdef0";
    const UID: &str = "0c3b2d8e-1f4a-4b6c-9d7e-8f9012345678";

    fn p(path: &str) -> (Option<String>, Option<String>) {
        let r = parse(path);
        (r.container, r.pod)
    }

    #[test]
    fn layouts() {
        let d = |s: &str| Some(s.to_string());
        assert_eq!(
            p(&format!("/system.slice/docker-{ID}.scope")),
            (d(&format!("docker://{ID}")), None)
        );
        assert_eq!(
            p(&format!("/docker/{ID}")),
            (d(&format!("docker://{ID}")), None)
        );
        let u = UID.replace('-', "_");
        assert_eq!(
            p(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
            )),
            (d(&format!("containerd://{ID}")), d(UID))
        );
        assert_eq!(
            p(&format!("/kubepods/besteffort/pod{UID}/{ID}")),
            (d(ID), d(UID))
        );
        assert_eq!(
            p(&format!(
                "/system.slice/containerd.service/kubepods-besteffort-pod{u}.slice:cri-containerd:{ID}"
            )),
            (d(&format!("containerd://{ID}")), d(UID))
        );
        assert_eq!(
            p(&format!(
                "/kubepods.slice/kubepods-pod{u}.slice/crio-{ID}.scope"
            )),
            (d(&format!("cri-o://{ID}")), d(UID))
        );
        assert_eq!(
            p(&format!("/machine.slice/libpod-{ID}.scope/container")),
            (d(&format!("podman://{ID}")), None)
        );
        // The runtime's monitor is no container; its scope is a unit.
        assert_eq!(
            p(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            (d(&format!("libpod-conmon-{ID}.scope")), None)
        );
        assert_eq!(
            p("/system.slice/redis-server.service"),
            (d("redis-server.service"), None)
        );
        assert_eq!(
            p("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope"),
            (d("app-foo.scope"), None)
        );
        assert_eq!(p("/"), (None, None));
        assert_eq!(
            p("/process_api/ed0f9525c3a813229df83c52dc45b682"),
            (None, None)
        );
        assert_eq!(
            p(&format!("/system.slice/docker-{}.scope", &ID[1..])).1,
            None
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/sys/fs/cgroup\\040x"), "/sys/fs/cgroup x");
        assert_eq!(unescape("/a\\"), "/a\\");
    }
}
