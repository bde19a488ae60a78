//! Recognising pub/sub traffic in replies and following a connection's subscription counts.
//!
//! Redis (src/pubsub.c) answers `(P|S)(UN)SUBSCRIBE` with one `[kind, channel, count]` frame
//! per channel — an array in RESP2, a push in RESP3 — where `count` is the client's number of
//! channels plus patterns (shard channels counted apart). Deliveries are
//! `[message, channel, payload]`, `[smessage, ...]` and `[pmessage, pattern, channel, payload]`.

use super::pending::Chan;
use crate::resp::{Kind, Reply};

/// A subscribe or unsubscribe confirmation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Confirmation {
    pub subscribe: bool,
    pub chan: Chan,
    /// `[unsubscribe, null, n]`: an argless unsubscribe that had nothing to drop.
    pub null_channel: bool,
    pub count: Option<u64>,
}

/// `reply` if it has the shape of a confirmation (any aggregate kind; callers decide by context).
pub(super) fn confirmation(reply: &Reply) -> Option<Confirmation> {
    if reply.len != 3 {
        return None;
    }
    let [c0, c1, c2] = reply.children.get(..3)? else {
        return None;
    };
    if !matches!(c0.kind, Kind::Bulk | Kind::Simple) || c2.kind != Kind::Integer {
        return None;
    }
    let (subscribe, chan) = match reply.child_text(0)? {
        b"subscribe" => (true, Chan::Channel),
        b"psubscribe" => (true, Chan::Pattern),
        b"ssubscribe" => (true, Chan::Shard),
        b"unsubscribe" => (false, Chan::Channel),
        b"punsubscribe" => (false, Chan::Pattern),
        b"sunsubscribe" => (false, Chan::Shard),
        _ => return None,
    };
    let null_channel = match c1.kind {
        Kind::Null => true,
        Kind::Bulk | Kind::Simple => false,
        _ => return None,
    };
    Some(Confirmation {
        subscribe,
        chan,
        null_channel,
        count: reply.child_text(2).and_then(parse_u64),
    })
}

/// `reply` has the shape of a pub/sub delivery.
pub(super) fn is_message(reply: &Reply) -> bool {
    let first_is_string = reply
        .children
        .first()
        .is_some_and(|c| matches!(c.kind, Kind::Bulk | Kind::Simple));
    first_is_string
        && match reply.child_text(0) {
            Some(b"message" | b"smessage") => reply.len == 3,
            Some(b"pmessage") => reply.len == 4,
            _ => false,
        }
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// A connection's subscriptions as the confirmations told them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PubSub {
    /// Channels plus patterns: what (un)subscribe and p(un)subscribe confirmations count.
    both: u64,
    channels: u64,
    patterns: u64,
    shard: u64,
    /// Started mid-stream or lost replies: the split above is a guess.
    pub unknown: bool,
}

impl PubSub {
    pub(super) fn new(unknown: bool) -> Self {
        PubSub {
            unknown,
            ..PubSub::default()
        }
    }

    pub(super) fn apply(&mut self, c: &Confirmation) {
        let Some(n) = c.count else { return };
        let grew = n.saturating_sub(self.both);
        let shrank = self.both.saturating_sub(n);
        match (c.subscribe, c.chan) {
            (_, Chan::Shard) => {
                self.shard = n;
                return;
            }
            (true, Chan::Channel) => self.channels = self.channels.saturating_add(grew),
            (true, Chan::Pattern) => self.patterns = self.patterns.saturating_add(grew),
            (false, Chan::Channel) => self.channels = self.channels.saturating_sub(shrank),
            (false, Chan::Pattern) => self.patterns = self.patterns.saturating_sub(shrank),
        }
        self.both = n;
        if n == 0 {
            self.channels = 0;
            self.patterns = 0;
        } else if self.channels.saturating_add(self.patterns) != n {
            self.unknown = true;
        }
    }

    /// In RESP2 subscribed mode (Redis's `CLIENT_PUBSUB`).
    pub(super) fn subscribed(&self) -> bool {
        self.both > 0 || self.shard > 0
    }

    /// Subscriptions of one kind, if known: how many confirmations an argless unsubscribe gets.
    pub(super) fn count(&self, chan: Chan) -> Option<u64> {
        if self.unknown {
            return None;
        }
        Some(match chan {
            Chan::Channel => self.channels,
            Chan::Pattern => self.patterns,
            Chan::Shard => self.shard,
        })
    }
}

/// A `MONITOR` feed line: `1700000000.123456 [0 127.0.0.1:50000] "get" "k"`.
pub(super) fn is_monitor_line(text: &[u8]) -> bool {
    crate::commands::redact::is_monitor_line(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines() {
        assert!(is_monitor_line(
            b"1700000000.123456 [0 127.0.0.1:5000] \"get\" \"k\""
        ));
        assert!(is_monitor_line(b"1.2 [0 lua] \"ping\""));
        assert!(!is_monitor_line(b"OK"));
        assert!(!is_monitor_line(b"1700000000.123456"));
        assert!(!is_monitor_line(b".5 [x"));
        assert!(!is_monitor_line(b""));
    }

    #[test]
    fn counts_follow_confirmations() {
        let conf = |subscribe, chan, n| Confirmation {
            subscribe,
            chan,
            null_channel: false,
            count: Some(n),
        };
        let mut p = PubSub::default();
        p.apply(&conf(true, Chan::Channel, 1));
        p.apply(&conf(true, Chan::Channel, 2));
        p.apply(&conf(true, Chan::Pattern, 3));
        p.apply(&conf(true, Chan::Channel, 3)); // already subscribed: no change
        p.apply(&conf(true, Chan::Shard, 1));
        assert_eq!(
            (
                p.count(Chan::Channel),
                p.count(Chan::Pattern),
                p.count(Chan::Shard)
            ),
            (Some(2), Some(1), Some(1))
        );
        p.apply(&conf(false, Chan::Channel, 2));
        assert_eq!(p.count(Chan::Channel), Some(1));
        p.apply(&conf(false, Chan::Shard, 0));
        assert!(p.subscribed());
        p.apply(&conf(false, Chan::Channel, 1));
        p.apply(&conf(false, Chan::Pattern, 0));
        assert!(!p.subscribed());
        assert_eq!(parse_u64(b"18446744073709551615"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"42"), Some(42));
    }
}
