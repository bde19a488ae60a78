//! Per-client series: `redis_client_commands_total{server, client, status}` and
//! `redis_client_command_duration_seconds{server, client}`.
//!
//! The `client` value comes from what the connection announced (see [`ClientLabel`]); each
//! server keeps at most [`MAX_CLIENTS`] values, later ones share `other`, so a client that sets
//! thousands of names adds one series, not thousands. The value is chosen per connection when
//! its identity changes and its slot cached in the connection's
//! [`Identity::metrics_slot`](crate::conn::Identity): the per-command cost is one load and two
//! local additions.

use std::cell::Cell;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, local::LocalHistogram};

use crate::conn::Identity;

use super::{STATUS_SLOTS, STATUSES};

/// Distinct `client` values per server; the rest are counted as [`OTHER_CLIENT`].
pub const MAX_CLIENTS: usize = 50;
/// `client` value shared by clients past [`MAX_CLIENTS`].
pub const OTHER_CLIENT: &str = "other";
/// `client` value of connections that announced nothing usable.
pub const UNKNOWN_CLIENT: &str = "unknown";

/// `--client-label`: which announced value names a connection's client first. The others follow
/// in the order name, process, library; `unknown` when none is known. `none` turns the per-client
/// series off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientLabel {
    /// `CLIENT SETNAME` (default).
    #[default]
    Name,
    /// The local process's command name (`client_comm`), when the client runs on this host.
    Process,
    /// The library name of `CLIENT SETINFO LIB-NAME`.
    Lib,
    /// No per-client series.
    None,
}

impl ClientLabel {
    /// The label value for `ident` and the client process's `comm`, cut to the identity's bound.
    fn value(self, ident: &Identity, comm: Option<&[u8]>) -> String {
        let name = ident.client_name.as_deref();
        let lib = ident.lib_name.as_deref();
        let order = match self {
            ClientLabel::Name | ClientLabel::None => [name, comm, lib],
            ClientLabel::Process => [comm, name, lib],
            ClientLabel::Lib => [lib, name, comm],
        };
        match order.into_iter().flatten().find(|v| !v.is_empty()) {
            Some(v) => String::from_utf8_lossy(v).into_owned(),
            None => UNKNOWN_CLIENT.to_string(),
        }
    }
}

/// Handles of one (server, client) pair; counts gather locally until the next flush.
pub(super) struct ClientHandles {
    label: String,
    duration: LocalHistogram,
    status: [Option<IntCounter>; STATUS_SLOTS],
    status_local: [Cell<u64>; STATUS_SLOTS],
    /// Holds unflushed counts: listed in `Metrics::dirty_clients`.
    pub(super) dirty: Cell<bool>,
}

impl ClientHandles {
    /// Counts one command of status slot `st` (and its latency when known).
    pub(super) fn count(
        &mut self,
        fam: &IntCounterVec,
        server: &str,
        st: usize,
        status: &str,
        latency_ns: Option<u64>,
    ) {
        if let (Some(c), Some(n)) = (self.status.get_mut(st), self.status_local.get(st)) {
            let label = self.label.as_str();
            c.get_or_insert_with(|| fam.with_label_values(&[server, label, status]));
            n.set(n.get().wrapping_add(1));
        }
        if let Some(ns) = latency_ns {
            self.duration.observe(ns as f64 * 1e-9);
        }
    }

    pub(super) fn flush(&self) {
        self.duration.flush();
        for (c, n) in self.status.iter().zip(&self.status_local) {
            if let Some(c) = c {
                c.inc_by(n.take());
            }
        }
    }
}

/// One server's client values, at most [`MAX_CLIENTS`] plus `other`.
#[derive(Default)]
pub(super) struct Clients {
    pub(super) slots: Vec<ClientHandles>,
    other: Option<usize>,
}

impl Clients {
    /// The slot of `ident`'s client on this server, resolved once per identity change and cached
    /// in the identity (the cached case inlined into the per-command path).
    #[inline]
    pub(super) fn slot(
        &mut self,
        duration: &HistogramVec,
        server: &str,
        mode: ClientLabel,
        ident: &Identity,
        comm: Option<&[u8]>,
    ) -> usize {
        let cached = ident.metrics_slot.get() as usize;
        // Cached plus one; checked, since a record could come from another `Metrics`.
        if cached > 0 && cached <= self.slots.len() {
            return cached - 1;
        }
        self.resolve(duration, server, mode, ident, comm)
    }

    /// [`Clients::slot`] when not cached.
    fn resolve(
        &mut self,
        duration: &HistogramVec,
        server: &str,
        mode: ClientLabel,
        ident: &Identity,
        comm: Option<&[u8]>,
    ) -> usize {
        let value = mode.value(ident, comm);
        let i = match self.slots.iter().position(|h| h.label == value) {
            Some(i) => i,
            None if self.slots.len() - usize::from(self.other.is_some()) < MAX_CLIENTS => {
                self.add(duration, server, value)
            }
            None => match self.other {
                Some(i) => i,
                None => {
                    let i = self.add(duration, server, OTHER_CLIENT.to_string());
                    self.other = Some(i);
                    i
                }
            },
        };
        ident.metrics_slot.set(u32::try_from(i + 1).unwrap_or(0));
        i
    }

    /// Removes every series of this server's clients (the server's slot is reclaimed).
    pub(super) fn remove_series(
        &self,
        server: &str,
        commands: &IntCounterVec,
        duration: &HistogramVec,
    ) {
        for h in &self.slots {
            let client = h.label.as_str();
            let _ = duration.remove_label_values(&[server, client]);
            for (st, c) in STATUSES.iter().zip(&h.status) {
                if c.is_some() {
                    let _ = commands.remove_label_values(&[server, client, st.as_str()]);
                }
            }
        }
    }

    fn add(&mut self, duration: &HistogramVec, server: &str, label: String) -> usize {
        self.slots.push(ClientHandles {
            duration: duration.with_label_values(&[server, &label]).local(),
            label,
            status: Default::default(),
            status_local: Default::default(),
            dirty: Cell::new(false),
        });
        self.slots.len() - 1
    }
}
