//! Time-partitioned column families, and the sealed blocks in them: one
//! chunk per (series, hour) in per-UTC-day families.
//!
//! A period's family (`blocks_YYYYMMDD`, `rollup_1h_YYYYMM`,
//! `rollup_1d_YYYY`, see [`Partitioned`]) is created the first time
//! something of that period is written, and found again on open by listing
//! the families. Keeping periods apart means retention drops a whole family
//! (no tombstones, no compaction churn) and a query touches only the
//! periods it asks for. [`Partitions`] is the in-memory list of periods of
//! one kind that have a family; only the writer changes it, readers take
//! short read locks.
//!
//! A reader may list a period just before the writer drops it; its family
//! is then missing and reads as empty, which is what the dropped data was
//! about to become anyway.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::RwLock;
use rocksdb::{BoundColumnFamily, Cache, ReadOptions};

use super::cf::{self, Partitioned};
use super::keys;
use super::{Db, StoreError};
use crate::model::DAY_MS;

/// A sealed block read back: its window start and chunk bytes.
pub type Block = (i64, Vec<u8>);

/// The periods of one kind that have a family.
pub struct Partitions {
    kind: Partitioned,
    periods: RwLock<BTreeSet<i64>>,
    cache: Cache,
}

impl Partitions {
    /// `periods` are the period starts of the families of `kind` found on
    /// open; new ones share the block cache `cache`.
    pub fn new(
        kind: Partitioned,
        periods: impl IntoIterator<Item = i64>,
        cache: Cache,
    ) -> Partitions {
        Partitions {
            kind,
            periods: RwLock::new(periods.into_iter().collect()),
            cache,
        }
    }

    /// The family of the period holding `ts`, created if missing.
    pub fn create<'a>(
        &self,
        db: &'a Db,
        ts: i64,
    ) -> Result<Arc<BoundColumnFamily<'a>>, StoreError> {
        let period = self.kind.period_start(ts);
        let name = self.kind.name(period);
        if !self.periods.read().contains(&period) {
            db.create_cf(&name, &cf::cf_options(&name, &self.cache))?;
            self.periods.write().insert(period);
        }
        db.cf_handle(&name)
            .ok_or(StoreError::MissingColumnFamily(name))
    }

    /// The family of the period holding `ts`, if it exists.
    pub fn existing<'a>(&self, db: &'a Db, ts: i64) -> Option<Arc<BoundColumnFamily<'a>>> {
        self.covering(db, ts, ts).pop().map(|(_, _, family)| family)
    }

    /// `(period start, family)` of every period overlapping `[from, to]`
    /// that has a family, oldest first.
    pub fn covering<'a>(
        &self,
        db: &'a Db,
        from: i64,
        to: i64,
    ) -> Vec<(i64, String, Arc<BoundColumnFamily<'a>>)> {
        let first = self.kind.period_start(from);
        if first > to {
            return Vec::new();
        }
        let periods: Vec<i64> = self.periods.read().range(first..=to).copied().collect();
        periods
            .into_iter()
            .filter_map(|p| {
                let name = self.kind.name(p);
                let family = db.cf_handle(&name)?;
                Some((p, name, family))
            })
            .collect()
    }

    /// Drops every family whose whole period ends at or before `cutoff`;
    /// returns their names.
    pub fn drop_before(&self, db: &Db, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let expired: Vec<i64> = self
            .periods
            .read()
            .iter()
            .copied()
            .take_while(|&p| self.kind.period_end(p) <= cutoff)
            .collect();
        let mut dropped = Vec::with_capacity(expired.len());
        for p in expired {
            // Forget the period first, so no new reader looks for it.
            self.periods.write().remove(&p);
            let name = self.kind.name(p);
            db.drop_cf(&name)?;
            dropped.push(name);
        }
        Ok(dropped)
    }

    /// Family names of every period, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.periods
            .read()
            .iter()
            .map(|&p| self.kind.name(p))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.periods.read().len()
    }
}

/// The chunk of the block of `id` at window `start`, if one was sealed.
pub fn get(
    db: &Db,
    parts: &Partitions,
    id: u64,
    start: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    match parts.existing(db, start) {
        Some(family) => Ok(db.get_cf(&family, keys::series_time(id, start))?),
        None => Ok(None),
    }
}

/// Iterator bounds covering windows of `id` in `[from, to]` within `day`.
fn day_bounds(id: u64, day: i64, from: i64, to: i64) -> ReadOptions {
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(keys::series_time(id, from.max(day)).to_vec());
    // Windows start on whole hours, so `+ 1` never skips one.
    let last = to.min(day + DAY_MS - 1);
    ro.set_iterate_upper_bound(keys::series_time(id, last + 1).to_vec());
    ro
}

fn read_item(name: &str, key: &[u8], value: &[u8]) -> Result<Block, StoreError> {
    let (_, start) = keys::parse_series_time(key)
        .ok_or_else(|| StoreError::corrupt(name, key, "malformed block key"))?;
    Ok((start, value.to_vec()))
}

/// Blocks of `id` whose windows start in `[from, to]`, oldest first.
pub fn scan(
    db: &Db,
    parts: &Partitions,
    id: u64,
    from: i64,
    to: i64,
) -> Result<Vec<Block>, StoreError> {
    let mut out = Vec::new();
    for (day, name, family) in parts.covering(db, from, to) {
        let mut it = db.raw_iterator_cf_opt(&family, day_bounds(id, day, from, to));
        it.seek_to_first();
        while let Some((key, value)) = it.item() {
            out.push(read_item(&name, key, value)?);
            it.next();
        }
        it.status()?;
    }
    Ok(out)
}

/// The newest block of `id` whose window starts at or after `from`.
pub fn newest(
    db: &Db,
    parts: &Partitions,
    id: u64,
    from: i64,
) -> Result<Option<Block>, StoreError> {
    for (day, name, family) in parts.covering(db, from, i64::MAX).into_iter().rev() {
        let mut it = db.raw_iterator_cf_opt(&family, day_bounds(id, day, from, i64::MAX));
        it.seek_to_last();
        if let Some((key, value)) = it.item() {
            return read_item(&name, key, value).map(Some);
        }
        it.status()?;
    }
    Ok(None)
}
