//! `redis_replication_*`: replication links seen on a watched port, from the wire.
//!
//! A link is named by its server's `server` label and a `replica` label: the replica's IP and
//! its `REPLCONF listening-port` (stable across reconnections, as in INFO replication), or the
//! connection's client address when the handshake was not seen. At most [`MAX_REPLICAS`]
//! replica values per server; later ones share `other`. Events come per link and per captured
//! segment at most, never per command, so plain hashing is fine here.

use std::collections::HashMap;
use std::net::SocketAddr;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::record::{ReplEvent, SyncKind};

/// Distinct `replica` label values per server.
pub const MAX_REPLICAS: usize = 32;
/// `replica` label value past [`MAX_REPLICAS`].
const OTHER_REPLICA: &str = "other";

pub(super) struct Families {
    links_active: IntGaugeVec,
    full_syncs: IntCounterVec,
    partial_syncs: IntCounterVec,
    rdb_bytes_total: IntCounterVec,
    rdb_bytes: IntGaugeVec,
    rdb_duration: prometheus::GaugeVec,
    bytes: IntCounterVec,
    commands: IntCounterVec,
    offset: IntGaugeVec,
    acked: IntGaugeVec,
    lag: IntGaugeVec,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| super::bad_metric(name, &e));
    super::register(r, name, Box::new(g.clone()));
    g
}

impl Families {
    pub(super) fn new(r: &Registry) -> Self {
        let sr = &["server", "replica"];
        Families {
            links_active: gauge_vec(
                r,
                "redis_replication_links_active",
                "Replication links (replicas connected to this server) being observed.",
                &["server"],
            ),
            full_syncs: super::counter_vec(
                r,
                "redis_replication_full_syncs_total",
                "Full syncs (+FULLRESYNC or SYNC: an RDB transfer) of replicas.",
                &["server"],
            ),
            partial_syncs: super::counter_vec(
                r,
                "redis_replication_partial_syncs_total",
                "Partial syncs (+CONTINUE) of replicas.",
                &["server"],
            ),
            rdb_bytes_total: super::counter_vec(
                r,
                "redis_replication_rdb_bytes_total",
                "RDB bytes sent to replicas by full syncs.",
                &["server"],
            ),
            rdb_bytes: gauge_vec(
                r,
                "redis_replication_rdb_bytes",
                "Size of the last RDB transferred to the replica.",
                sr,
            ),
            rdb_duration: {
                let name = "redis_replication_rdb_duration_seconds";
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        name,
                        "Time from the first to the last byte of the last RDB transferred to the replica.",
                    ),
                    sr,
                )
                .unwrap_or_else(|e| super::bad_metric(name, &e));
                super::register(r, name, Box::new(g.clone()));
                g
            },
            bytes: super::counter_vec(
                r,
                "redis_replication_bytes_total",
                "Bytes of commands the master propagated to the replica (after the RDB).",
                sr,
            ),
            commands: super::counter_vec(
                r,
                "redis_replication_commands_total",
                "Commands the master propagated to the replica.",
                sr,
            ),
            offset: gauge_vec(
                r,
                "redis_replication_stream_offset",
                "The master's replication offset as streamed to the replica (known when the handshake was seen).",
                sr,
            ),
            acked: gauge_vec(
                r,
                "redis_replication_acked_offset",
                "The replica's last REPLCONF ACK offset.",
                sr,
            ),
            lag: gauge_vec(
                r,
                "redis_replication_ack_lag_bytes",
                "Stream offset minus the replica's last acknowledged offset.",
                sr,
            ),
        }
    }
}

/// One `replica` label value of one server.
struct Link {
    label: String,
    /// Live links with this label (a replica reconnecting can overlap its old link).
    live: u32,
    bytes: IntCounter,
    commands: IntCounter,
}

/// The links of one server label.
struct Server {
    links_active: IntGauge,
    rdb_bytes_total: IntCounter,
    replicas: HashMap<SocketAddr, usize>,
    links: Vec<Link>,
    other: Option<usize>,
}

#[derive(Default)]
pub(super) struct Links {
    servers: HashMap<String, Server>,
}

impl Links {
    pub(super) fn record(
        &mut self,
        fam: &Families,
        server: &str,
        replica: SocketAddr,
        ev: ReplEvent,
    ) {
        let s = self
            .servers
            .entry(server.to_owned())
            .or_insert_with(|| Server {
                links_active: fam.links_active.with_label_values(&[server]),
                rdb_bytes_total: fam.rdb_bytes_total.with_label_values(&[server]),
                replicas: HashMap::new(),
                links: Vec::new(),
                other: None,
            });
        let i = match s.replicas.get(&replica) {
            Some(&i) => i,
            None => {
                let label = if s.links.len() - usize::from(s.other.is_some()) < MAX_REPLICAS {
                    replica.to_string()
                } else {
                    OTHER_REPLICA.to_owned()
                };
                let i = match s.other {
                    Some(o) if label == OTHER_REPLICA => o,
                    _ => {
                        let l = [server, label.as_str()];
                        s.links.push(Link {
                            bytes: fam.bytes.with_label_values(&l),
                            commands: fam.commands.with_label_values(&l),
                            label: label.clone(),
                            live: 0,
                        });
                        s.links.len() - 1
                    }
                };
                if label == OTHER_REPLICA {
                    s.other = Some(i);
                }
                // Bounded: one entry per distinct replica address up to the cap, then only a
                // few more to remember which ones went to `other`.
                if s.replicas.len() < 4 * MAX_REPLICAS {
                    s.replicas.insert(replica, i);
                }
                i
            }
        };
        let Some(link) = s.links.get_mut(i) else {
            return;
        };
        let l = [server, link.label.as_str()];
        let shown = link.label != OTHER_REPLICA;
        match ev {
            ReplEvent::Up(kind) => {
                match kind {
                    SyncKind::Full | SyncKind::RdbChannel => {
                        fam.full_syncs.with_label_values(&[server]).inc();
                    }
                    SyncKind::Partial => fam.partial_syncs.with_label_values(&[server]).inc(),
                    SyncKind::Unknown | SyncKind::MainChannel => {}
                }
                // A Redis 8 RDB channel carries the full sync of a link counted on its main
                // connection (as INFO counts the replica once).
                if kind != SyncKind::RdbChannel {
                    s.links_active.inc();
                    link.live += 1;
                }
            }
            ReplEvent::Rdb { bytes, duration_ns } => {
                s.rdb_bytes_total.inc_by(bytes);
                if shown {
                    fam.rdb_bytes
                        .with_label_values(&l)
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    fam.rdb_duration
                        .with_label_values(&l)
                        .set(duration_ns as f64 * 1e-9);
                }
            }
            ReplEvent::Stream {
                commands,
                bytes,
                offset,
                lag,
            } => {
                link.commands.inc_by(commands);
                link.bytes.inc_by(bytes);
                if let Some(o) = offset.filter(|_| shown) {
                    fam.offset
                        .with_label_values(&l)
                        .set(i64::try_from(o).unwrap_or(i64::MAX));
                }
                if let Some(lag) = lag.filter(|_| shown) {
                    fam.lag
                        .with_label_values(&l)
                        .set(i64::try_from(lag).unwrap_or(i64::MAX));
                }
            }
            ReplEvent::Ack { offset, lag } => {
                if shown {
                    fam.acked
                        .with_label_values(&l)
                        .set(i64::try_from(offset).unwrap_or(i64::MAX));
                    if let Some(lag) = lag {
                        fam.lag
                            .with_label_values(&l)
                            .set(i64::try_from(lag).unwrap_or(i64::MAX));
                    }
                }
            }
            ReplEvent::Down => {
                if s.links_active.get() > 0 {
                    s.links_active.dec();
                }
                link.live = link.live.saturating_sub(1);
                if link.live == 0 && shown {
                    // A gone link's position and lag are not current any more.
                    let _ = fam.offset.remove_label_values(&l);
                    let _ = fam.acked.remove_label_values(&l);
                    let _ = fam.lag.remove_label_values(&l);
                }
            }
        }
    }
}
