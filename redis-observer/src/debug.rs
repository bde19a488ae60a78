//! Debugging outputs that do file I/O, kept out of the protocol core.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::conn::ConnMeta;
use crate::pipeline::StreamTap;
use crate::record::Dir;

/// Connections whose files stay open at once; past it, the oldest are closed (and reopened in
/// append mode if they send more).
const MAX_OPEN: usize = 256;

/// `run --dump-streams DIR`: each connection's reassembled bytes, appended to
/// `DIR/<client ip>_<port>-<server ip>_<port>.req` and `.rep`.
pub fn stream_dump(dir: PathBuf) -> StreamTap {
    let mut open: HashMap<(SocketAddr, SocketAddr), [Option<File>; 2]> = HashMap::new();
    Box::new(move |meta: &ConnMeta, dir_: Dir, bytes: &[u8]| {
        let key = (meta.client, meta.server);
        if !open.contains_key(&key) && open.len() >= MAX_OPEN {
            open.clear();
        }
        let files = open.entry(key).or_insert_with(|| {
            let path = |ext: &str| {
                dir.join(format!(
                    "{}_{}-{}_{}.{ext}",
                    meta.client.ip(),
                    meta.client.port(),
                    meta.server.ip(),
                    meta.server.port()
                ))
            };
            let open = |ext: &str| {
                File::options()
                    .create(true)
                    .append(true)
                    .open(path(ext))
                    .ok()
            };
            [open("req"), open("rep")]
        });
        let i = match dir_ {
            Dir::Request => 0,
            Dir::Reply => 1,
        };
        if let Some(Some(f)) = files.get_mut(i) {
            let _ = f.write_all(bytes);
        }
    })
}
