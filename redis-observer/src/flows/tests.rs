use redis_ebpf_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use crate::record::Dir;
use std::net::SocketAddr;

use super::*;
use proptest::prelude::*;
use rstest::rstest;

/// A state whose memory the test sets.
#[derive(Debug, Default)]
struct S {
    mem: usize,
    tag: u32,
    /// Never heard from its server.
    one_sided: bool,
    busy: bool,
}

impl FlowState for S {
    fn mem(&self) -> usize {
        self.mem
    }
    fn confirmed(&self) -> bool {
        !self.one_sided
    }
    fn busy(&self) -> bool {
        self.busy
    }
}

/// Sets client `n`'s flags (the flow exists).
fn mark(t: &mut FlowTable<S>, n: u16, now: u64, one_sided: bool, busy: bool) {
    let mut r = t.get(client(n), a(SERVER), now).unwrap();
    r.one_sided = one_sided;
    r.busy = busy;
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 40000 + n))
}

const SERVER: &str = "10.0.0.2:6379";

fn table(max_flows: usize, min_idle: u64) -> FlowTable<S> {
    FlowTable::new(
        [6379].into_iter().collect(),
        FlowLimits {
            max_flows,
            max_mem_bytes: usize::MAX,
            min_idle_to_evict_ns: min_idle,
        },
    )
}

/// Inserts (or touches) client `n`'s flow at `now`; returns what was evicted.
fn touch(t: &mut FlowTable<S>, n: u16, now: u64) -> (bool, Vec<u16>) {
    let mut ev = Vec::new();
    let ok = t
        .get_or_insert_with(
            client(n),
            a(SERVER),
            now,
            |_, _| S {
                tag: u32::from(n),
                ..S::default()
            },
            |k, _| ev.push(k.client.port() - 40000),
        )
        .is_some();
    (ok, ev)
}

#[rstest]
#[case::to_server("10.0.0.1:40000", "10.0.0.2:6379", Dir::Request)]
#[case::from_server("10.0.0.2:6379", "10.0.0.1:40000", Dir::Reply)]
#[case::neither_lower_port_is_server("10.0.0.1:40000", "10.0.0.2:80", Dir::Request)]
#[case::neither_reverse("10.0.0.2:80", "10.0.0.1:40000", Dir::Reply)]
#[case::both_lower_port_is_server("10.0.0.1:6380", "10.0.0.2:6379", Dir::Request)]
#[case::equal_ports_lower_addr_is_server("10.0.0.9:6379", "10.0.0.2:6379", Dir::Request)]
#[case::equal_ports_reverse("10.0.0.2:6379", "10.0.0.9:6379", Dir::Reply)]
#[case::v6("[::1]:6379", "[::1]:51000", Dir::Reply)]
fn orientation(#[case] src: &str, #[case] dst: &str, #[case] dir: Dir) {
    let ports: PortSet = [6379, 6380].into_iter().collect();
    let (key, d) = orient(&ports, a(src), a(dst));
    assert_eq!(d, dir);
    // The other direction finds the same key.
    let (key2, d2) = orient(&ports, a(dst), a(src));
    assert_eq!(key, key2);
    assert_ne!(d, d2);
    let (client, server) = match dir {
        Dir::Request => (a(src), a(dst)),
        Dir::Reply => (a(dst), a(src)),
    };
    assert_eq!(key, FlowKey { client, server });
}

#[test]
fn port_set() {
    let s: PortSet = [0, 63, 64, 6379, 65535].into_iter().collect();
    for p in [0, 63, 64, 6379, 65535] {
        assert!(s.contains(p));
    }
    for p in [1, 62, 65, 6378, 65534] {
        assert!(!s.contains(p));
    }
    assert!(PortSet::new().is_empty());
    assert_eq!(format!("{s:?}"), "{0, 63, 64, 6379, 65535}");
}

#[test]
fn lookup_returns_direction_and_creation() {
    let mut t = table(10, 0);
    let r = t
        .get_or_insert_with(
            client(1),
            a(SERVER),
            5,
            |_, dir| {
                assert_eq!(dir, Dir::Request);
                S::default()
            },
            |_, _| {},
        )
        .unwrap();
    assert!(r.is_new());
    assert_eq!(r.dir(), Dir::Request);
    drop(r);
    let r = t.get(a(SERVER), client(1), 6).unwrap();
    assert!(!r.is_new());
    assert_eq!(r.dir(), Dir::Reply);
    assert_eq!(r.key().client, client(1));
    drop(r);
    assert!(t.get(client(2), a(SERVER), 7).is_none());
    assert_eq!(t.stats().flows_created, 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn cap_evicts_least_recently_active() {
    let mut t = table(3, 0);
    assert_eq!(touch(&mut t, 1, 1), (true, vec![]));
    assert_eq!(touch(&mut t, 2, 2), (true, vec![]));
    assert_eq!(touch(&mut t, 3, 3), (true, vec![]));
    // Flow 1 becomes the most recent; 2 is now the oldest.
    assert_eq!(touch(&mut t, 1, 4), (true, vec![]));
    assert_eq!(touch(&mut t, 4, 5), (true, vec![2]));
    assert_eq!(touch(&mut t, 5, 6), (true, vec![3]));
    assert_eq!(touch(&mut t, 6, 7), (true, vec![1]));
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().flows_evicted_cap, 3);
    assert_eq!(t.stats().flows_created, 6);
}

#[test]
fn cap_refuses_when_nothing_is_idle_enough() {
    let mut t = table(2, 10);
    touch(&mut t, 1, 1);
    touch(&mut t, 2, 2);
    assert_eq!(touch(&mut t, 3, 5), (false, vec![]));
    assert_eq!(t.stats().flows_refused, 1);
    // Existing flows are still found when full.
    assert_eq!(touch(&mut t, 2, 6), (true, vec![]));
    // Flow 1 idle 10 ns: evictable.
    assert_eq!(touch(&mut t, 3, 11), (true, vec![1]));
    let tags: Vec<u32> = {
        let mut v: Vec<u32> = t.iter().map(|(_, s)| s.tag).collect();
        v.sort();
        v
    };
    assert_eq!(tags, vec![2, 3]);
}

#[test]
fn zero_cap_refuses_everything() {
    let mut t = table(0, 0);
    assert_eq!(touch(&mut t, 1, 1), (false, vec![]));
    assert_eq!(t.stats().flows_refused, 1);
}

#[test]
fn memory_cap_counts_state_growth() {
    let per = FlowTable::<S>::PER_FLOW;
    let mut t: FlowTable<S> = FlowTable::new(
        [6379].into_iter().collect(),
        FlowLimits {
            max_flows: 100,
            max_mem_bytes: 2 * per + 1000,
            min_idle_to_evict_ns: 0,
        },
    );
    touch(&mut t, 1, 1);
    touch(&mut t, 2, 2);
    assert_eq!(t.flows_mem(), 2 * per);
    // Flow 2 grows; the table sees it when the reference is dropped.
    t.get(client(2), a(SERVER), 3).unwrap().mem = 1000;
    assert_eq!(t.flows_mem(), 2 * per + 1000);
    // Full by memory: the oldest (1) makes room.
    assert_eq!(touch(&mut t, 3, 4), (true, vec![1]));
    t.get(client(3), a(SERVER), 5).unwrap().mem = 500;
    let mut ev = Vec::new();
    t.enforce_limits(6, |k, _| ev.push(k.client.port() - 40000));
    assert_eq!(ev, vec![2]);
    assert_eq!(t.flows_mem(), per + 500);
    t.for_each_mut(|_, s| s.mem = 100);
    assert_eq!(t.flows_mem(), per + 100);
    assert!(t.mem() >= t.flows_mem());
}

#[test]
fn idle_expiry_removes_oldest_first() {
    let mut t = table(100, 0);
    for n in 1..=4 {
        touch(&mut t, n, u64::from(n));
    }
    touch(&mut t, 1, 10);
    let mut ev = Vec::new();
    let n = t.expire(12, 5, |k, s| ev.push((k.client.port() - 40000, s.tag)));
    assert_eq!(n, 3);
    assert_eq!(ev, vec![(2, 2), (3, 3), (4, 4)]);
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().flows_expired_idle, 3);
    assert_eq!(t.expire(12, 5, |_, _| {}), 0);
    assert_eq!(t.expire(15, 5, |_, _| {}), 1);
    assert!(t.is_empty());
    assert_eq!(t.flows_mem(), 0);
}

#[test]
fn expiry_early_in_time_does_not_underflow() {
    let mut t = table(100, 0);
    touch(&mut t, 1, 0);
    assert_eq!(t.expire(3, 10, |_, _| {}), 0);
    assert_eq!(t.len(), 1);
}

#[test]
fn remove_and_reuse_of_a_key_is_a_new_flow() {
    let mut t = table(100, 0);
    touch(&mut t, 1, 1);
    let key = t.orient(client(1), a(SERVER)).0;
    assert_eq!(t.remove(&key).map(|s| s.tag), Some(1));
    assert!(t.remove(&key).is_none());
    assert_eq!(t.stats().flows_closed, 1);
    touch(&mut t, 1, 50);
    // The old flow's heap item (time 1) must not expire the new flow.
    assert_eq!(t.expire(52, 10, |_, _| {}), 0);
    assert_eq!(t.len(), 1);
}

#[test]
fn heap_does_not_grow_with_closed_flows() {
    let mut t = table(1000, 0);
    for i in 0..100_000u64 {
        let n = (i % 20_000) as u16;
        touch(&mut t, n, i);
        let key = t.orient(client(n), a(SERVER)).0;
        t.remove(&key);
    }
    assert!(t.is_empty());
    assert!(t.heap.len() <= 1024 + 1, "heap {}", t.heap.len());
}

#[test]
fn hundred_thousand_flows() {
    let mut t: FlowTable<S> = FlowTable::new(
        [6379].into_iter().collect(),
        FlowLimits {
            max_flows: 100_000,
            ..FlowLimits::default()
        },
    );
    let server = a(SERVER);
    for i in 0..100_000u32 {
        let c = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 50000));
        assert!(
            t.get_or_insert_with(c, server, u64::from(i), |_, _| S::default(), |_, _| {})
                .is_some()
        );
    }
    assert_eq!(t.len(), 100_000);
    // Touch every flow again, then expire half.
    for i in 0..100_000u32 {
        let c = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 50000));
        assert!(t.get(server, c, 200_000 + u64::from(i)).is_some());
    }
    assert_eq!(t.expire(349_999, 100_000, |_, _| {}), 50_000);
    assert_eq!(t.len(), 50_000);
    let mut n = 0;
    t.drain(|_, _| n += 1);
    assert_eq!(n, 50_000);
    assert_eq!(t.flows_mem(), 0);
}

proptest! {
    /// Expiring everything hands flows out in order of last activity.
    #[test]
    fn eviction_order_is_last_activity(ops in proptest::collection::vec((0u16..40, any::<bool>()), 1..300)) {
        let mut t = table(1000, 0);
        let mut model: std::collections::HashMap<u16, u64> = Default::default();
        for (i, &(n, close)) in ops.iter().enumerate() {
            let now = i as u64 + 1;
            if close {
                let key = t.orient(client(n), a(SERVER)).0;
                prop_assert_eq!(t.remove(&key).is_some(), model.remove(&n).is_some());
            } else {
                touch(&mut t, n, now);
                model.insert(n, now);
            }
        }
        let mut want: Vec<(u64, u16)> = model.iter().map(|(&n, &ts)| (ts, n)).collect();
        want.sort();
        let mut got = Vec::new();
        t.expire(u64::MAX, 0, |k, _| got.push(k.client.port() - 40000));
        prop_assert_eq!(got, want.into_iter().map(|(_, n)| n).collect::<Vec<_>>());
    }
}

// --- lifecycle -------------------------------------------------------------------------

const SYN: u8 = TCP_SYN;
const SYNACK: u8 = TCP_SYN | TCP_ACK;
const ACK: u8 = TCP_ACK;
const FIN: u8 = TCP_FIN | TCP_ACK;
const RST: u8 = TCP_RST;

#[test]
fn handshake_and_fin_close() {
    let mut l = Lifecycle::new();
    assert_eq!(l.observe(Dir::Request, SYN, 100), Transition::Nothing);
    assert_eq!(l.observe(Dir::Reply, SYNACK, 900), Transition::Nothing);
    assert!(l.saw_client_syn() && l.saw_server_syn());
    assert_eq!(l.observe(Dir::Request, ACK, 101), Transition::Nothing);
    assert_eq!(l.observe(Dir::Request, FIN, 150), Transition::Nothing);
    assert!(l.fin_seen(Dir::Request) && !l.fin_seen(Dir::Reply));
    assert!(!l.is_closed());
    assert_eq!(
        l.observe(Dir::Reply, FIN, 950),
        Transition::Closed(CloseReason::Fin)
    );
    assert!(l.is_closed());
    // Reported once; a retransmitted FIN or the last ACK changes nothing.
    assert_eq!(l.observe(Dir::Reply, FIN, 950), Transition::Nothing);
    assert_eq!(l.observe(Dir::Request, ACK, 151), Transition::Nothing);
}

#[rstest]
#[case::from_client(Dir::Request)]
#[case::from_server(Dir::Reply)]
fn rst_closes(#[case] dir: Dir) {
    let mut l = Lifecycle::new();
    l.observe(Dir::Request, SYN, 1);
    assert_eq!(
        l.observe(dir, RST | ACK, 2),
        Transition::Closed(CloseReason::Rst)
    );
    assert_eq!(l.observe(dir, RST, 2), Transition::Nothing);
}

#[test]
fn one_fin_twice_does_not_close() {
    let mut l = Lifecycle::new();
    l.observe(Dir::Request, FIN, 1);
    assert_eq!(l.observe(Dir::Request, FIN, 1), Transition::Nothing);
    assert!(!l.is_closed());
}

#[test]
fn syn_retransmission_and_reuse() {
    let mut l = Lifecycle::new();
    assert_eq!(l.observe(Dir::Request, SYN, 7), Transition::Nothing);
    assert_eq!(l.observe(Dir::Request, SYN, 7), Transition::Nothing);
    l.observe(Dir::Reply, SYNACK, 70);
    assert_eq!(l.observe(Dir::Request, SYN, 9000), Transition::Reopened);
    assert!(l.saw_client_syn() && !l.saw_server_syn());
    // Mid-stream pickup, then a SYN: the 4-tuple carries a new connection.
    let mut l = Lifecycle::new();
    l.observe(Dir::Request, ACK, 5);
    assert!(!l.saw_client_syn());
    assert_eq!(l.observe(Dir::Request, SYN, 6), Transition::Reopened);
    // A server SYN without ACK (simultaneous open) is not a client SYN.
    let mut l = Lifecycle::new();
    assert_eq!(l.observe(Dir::Reply, SYN, 6), Transition::Nothing);
    assert!(!l.saw_client_syn());
}

#[test]
fn one_sided_flows_go_first_whatever_their_age() {
    let mut t = table(3, 10);
    touch(&mut t, 1, 1);
    touch(&mut t, 2, 2);
    touch(&mut t, 3, 3);
    // 2 and 3 never heard from their server; 1 is older and idle, but a real connection.
    mark(&mut t, 2, 3, true, false);
    mark(&mut t, 3, 3, true, false);
    assert_eq!(touch(&mut t, 4, 100), (true, vec![2]));
    mark(&mut t, 4, 100, true, false);
    assert_eq!(touch(&mut t, 5, 100), (true, vec![3]));
    mark(&mut t, 5, 100, true, false);
    // 4 is one-sided but active 5 ns ago (a new connection awaiting its SYN-ACK): the real
    // connection 1, idle, goes instead.
    assert_eq!(touch(&mut t, 6, 105), (true, vec![1]));
    assert_eq!(touch(&mut t, 7, 111), (true, vec![4]));
    assert_eq!(t.stats().flows_evicted_unconfirmed, 3);
}

#[test]
fn a_confirmed_flow_leaves_the_one_sided_queue() {
    let mut t = table(2, 10);
    touch(&mut t, 1, 1);
    mark(&mut t, 1, 1, true, false);
    touch(&mut t, 2, 2);
    // 1 hears from its server: no longer first to go.
    mark(&mut t, 1, 50, false, false);
    assert_eq!(touch(&mut t, 3, 100), (true, vec![2]));
}

#[test]
fn busy_flows_are_spared_by_idle_expiry_and_eviction() {
    let mut t = table(3, 10);
    touch(&mut t, 1, 1);
    touch(&mut t, 2, 2);
    touch(&mut t, 3, 3);
    // 1 waits on a blocking command: quiet, but not idle.
    mark(&mut t, 1, 1, false, true);
    let mut gone = Vec::new();
    assert_eq!(
        t.expire(1_000, 100, |k, _| gone.push(k.client.port() - 40000)),
        2
    );
    gone.sort();
    assert_eq!(gone, vec![2, 3]);
    assert_eq!(t.len(), 1);
    // Room is made from the idle ones; the busy one is kept and the new flow refused when
    // nothing else can go.
    touch(&mut t, 4, 1_000);
    touch(&mut t, 5, 1_001);
    assert_eq!(touch(&mut t, 6, 2_000), (true, vec![4]));
    assert_eq!(touch(&mut t, 7, 2_001), (true, vec![5]));
    mark(&mut t, 6, 2_001, false, true);
    mark(&mut t, 7, 2_001, false, true);
    assert_eq!(touch(&mut t, 8, 3_000), (false, vec![]));
    assert_eq!(t.stats().flows_refused, 1);
    // Done waiting: an ordinary idle flow again.
    mark(&mut t, 1, 1, false, false);
    assert_eq!(touch(&mut t, 8, 3_000), (true, vec![1]));
}

#[test]
fn memory_cap_takes_a_busy_flow_as_last_resort() {
    let mut t = FlowTable::<S>::new(
        [6379].into_iter().collect(),
        FlowLimits {
            max_flows: 100,
            max_mem_bytes: 3 * FlowTable::<S>::PER_FLOW + 1000,
            min_idle_to_evict_ns: 10,
        },
    );
    touch(&mut t, 1, 1);
    touch(&mut t, 2, 2);
    mark(&mut t, 1, 2, false, true);
    mark(&mut t, 2, 2, false, true);
    // Both grow past the cap: the only way under is to drop a busy flow, the biggest.
    t.get(client(2), a(SERVER), 3).unwrap().mem = 600;
    t.get(client(1), a(SERVER), 4).unwrap().mem = 1500;
    let mut gone = Vec::new();
    t.enforce_mem(5, |k, _| gone.push(k.client.port() - 40000));
    assert_eq!(gone, vec![1]);
    assert_eq!(t.stats().flows_evicted_busy, 1);
    assert!(t.flows_mem() <= t.limits().max_mem_bytes);
    // Under the cap: nothing to do.
    t.enforce_mem(6, |_, _| panic!("under the cap"));
}

#[test]
fn many_busy_flows_cost_bounded_work_per_pass() {
    let mut t = table(5_000, 10);
    for n in 0..3_000u16 {
        touch(&mut t, n, u64::from(n));
        mark(&mut t, n, u64::from(n), false, true);
    }
    // Every flow is busy: one expiry pass looks at a bounded number and removes none.
    assert_eq!(t.expire(1 << 40, 1, |_, _| panic!("busy")), 0);
    assert_eq!(t.len(), 3_000);
    assert!(t.heap.len() <= 3_000, "{}", t.heap.len());
}
