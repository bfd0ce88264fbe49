//! Cardinality limits: `max-series` and `max-new-series-per-minute`.
//!
//! A point of a series the store does not have yet is refused, with
//! `put: illegal argument: too many series: ...`, once either limit is
//! reached; points of known series always pass. The client must get that
//! error, so the check runs where the point arrives (a telnet connection,
//! `/api/put`), before it is queued: the writer thread, which resolves
//! series ids, sees the point only after the reply is gone.
//!
//! So [`SeriesGate`] keeps its own set of known series, seeded from the
//! store at startup and grown as it admits new ones: 64-bit hashes of the
//! series keys rather than the keys, 8 bytes a series instead of a second
//! copy of every key. Two series whose hashes collide count as one, so a
//! new series may pass as known; at a million series that happens to
//! about one new series in 10^7, and it only lets one series more in.
//!
//! Check and insert happen under one write lock, so two connections
//! sending the same new series at once count it once. A series counts
//! from its admission, even if its points are then shed by the queue, so
//! the count may run a little ahead of the store's (`tsd.rtsd.series`).
//!
//! The per-minute limit is a token bucket (governor) holding N new series
//! and refilled at N a minute: a burst of N at once, then one every 60/N
//! seconds. A new series that `max-series` refuses takes no token.
//!
//! With both limits at 0 (the default) there is no gate: nothing is
//! hashed or locked per point.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

use crate::model::SeriesKey;
use crate::protocol::SeriesLimit;

/// Admits new series while the limits allow; shared by every connection
/// and `/api/put`.
pub struct SeriesGate {
    /// Hashes of the series known to exist or admitted.
    known: RwLock<HashSet<u64>>,
    hasher: foldhash::fast::FixedState,
    /// 0: no limit.
    max_series: u64,
    per_minute: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl SeriesGate {
    /// A gate for the limits (0 is none) knowing the series `existing`;
    /// `None` when neither limit is set.
    pub fn new<'a>(
        max_series: u64,
        new_per_minute: u32,
        existing: impl IntoIterator<Item = &'a SeriesKey>,
    ) -> Option<SeriesGate> {
        let per_minute =
            NonZeroU32::new(new_per_minute).map(|n| (RateLimiter::direct(Quota::per_minute(n)), n));
        if max_series == 0 && per_minute.is_none() {
            return None;
        }
        let hasher = foldhash::fast::FixedState::default();
        let known = existing.into_iter().map(|k| hasher.hash_one(k)).collect();
        Some(SeriesGate {
            known: RwLock::new(known),
            hasher,
            max_series,
            per_minute,
        })
    }

    /// Whether a point of `series` may be queued; a new series that is
    /// admitted counts from now on.
    pub fn admit(&self, series: &SeriesKey) -> Result<(), SeriesLimit> {
        let hash = self.hasher.hash_one(series);
        if self.known.read().contains(&hash) {
            return Ok(());
        }
        let mut known = self.known.write();
        if known.contains(&hash) {
            return Ok(());
        }
        if self.max_series > 0 && known.len() as u64 >= self.max_series {
            return Err(SeriesLimit::Total(self.max_series));
        }
        if let Some((bucket, n)) = &self.per_minute {
            bucket
                .check()
                .map_err(|_| SeriesLimit::PerMinute(n.get()))?;
        }
        known.insert(hash);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(i: usize) -> SeriesKey {
        SeriesKey::new("m", [("host", format!("h{i}").as_str())])
    }

    #[test]
    fn no_limits_no_gate() {
        assert!(SeriesGate::new(0, 0, &[series(1)]).is_none());
    }

    #[test]
    fn max_series_counts_existing_ones_and_keeps_admitting_known_ones() {
        let existing = [series(0), series(1)];
        let gate = SeriesGate::new(3, 0, &existing).expect("a gate");
        assert_eq!(gate.admit(&series(1)), Ok(()));
        assert_eq!(gate.admit(&series(2)), Ok(()));
        assert_eq!(gate.admit(&series(2)), Ok(()));
        assert_eq!(gate.admit(&series(3)), Err(SeriesLimit::Total(3)));
        for i in 0..3 {
            assert_eq!(gate.admit(&series(i)), Ok(()), "{i}");
        }
    }

    #[test]
    fn new_series_per_minute_is_a_burst_then_a_trickle() {
        let gate = SeriesGate::new(0, 4, &[]).expect("a gate");
        for i in 0..4 {
            assert_eq!(gate.admit(&series(i)), Ok(()), "{i}");
        }
        // The next token comes in 15 s; this test takes far less.
        assert_eq!(gate.admit(&series(4)), Err(SeriesLimit::PerMinute(4)));
        assert_eq!(gate.admit(&series(0)), Ok(()));
    }

    #[test]
    fn a_series_refused_by_max_series_takes_no_token() {
        let gate = SeriesGate::new(1, 2, &[]).expect("a gate");
        assert_eq!(gate.admit(&series(0)), Ok(()));
        assert_eq!(gate.admit(&series(1)), Err(SeriesLimit::Total(1)));
        assert_eq!(gate.admit(&series(1)), Err(SeriesLimit::Total(1)));
        // One token of two left: still there.
        let (bucket, _) = gate.per_minute.as_ref().expect("limit");
        assert!(bucket.check().is_ok());
    }

    #[test]
    fn racing_admissions_of_one_new_series_count_it_once() {
        let gate = SeriesGate::new(2, 0, &[]).expect("a gate");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(gate.admit(&series(7)), Ok(())));
            }
        });
        assert_eq!(gate.admit(&series(8)), Ok(()));
        assert_eq!(gate.admit(&series(9)), Err(SeriesLimit::Total(2)));
    }
}
