//! Sealed blocks: one chunk per (series, hour) in per-UTC-day column families.
//!
//! A day's family (`blocks_YYYYMMDD`) is created the first time a window of
//! that day seals, and found again on open by listing the families. Keeping
//! days apart means retention can drop a whole family (no tombstones, no
//! compaction churn) and a query touches only the days it asks for.
//! [`Partitions`] is the in-memory list of days that have a family; only the
//! writer adds to it, readers take short read locks.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::RwLock;
use rocksdb::{BoundColumnFamily, Cache, ReadOptions};

use super::cf::{self, DAY_MS};
use super::keys;
use super::{Db, StoreError};

/// A sealed block read back: its window start and chunk bytes.
pub type Block = (i64, Vec<u8>);

/// The days that have a block family.
pub struct Partitions {
    days: RwLock<BTreeSet<i64>>,
    cache: Cache,
}

impl Partitions {
    /// `days` are the day starts of the families found on open; new ones
    /// share the block cache `cache`.
    pub fn new(days: impl IntoIterator<Item = i64>, cache: Cache) -> Partitions {
        Partitions {
            days: RwLock::new(days.into_iter().collect()),
            cache,
        }
    }

    /// The family of the day starting at `day`, created if missing.
    pub fn create<'a>(
        &self,
        db: &'a Db,
        day: i64,
    ) -> Result<Arc<BoundColumnFamily<'a>>, StoreError> {
        let name = cf::blocks_name(day);
        if !self.contains(day) {
            db.create_cf(&name, &cf::cf_options(&name, &self.cache))?;
            self.days.write().insert(day);
        }
        family(db, &name)
    }

    /// Day starts in `[from, to]` that have a family, oldest first.
    pub fn between(&self, from: i64, to: i64) -> Vec<i64> {
        if from > to {
            return Vec::new();
        }
        self.days.read().range(from..=to).copied().collect()
    }

    pub fn contains(&self, day: i64) -> bool {
        self.days.read().contains(&day)
    }

    pub fn all(&self) -> Vec<i64> {
        self.days.read().iter().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.days.read().len()
    }
}

fn family<'a>(db: &'a Db, name: &str) -> Result<Arc<BoundColumnFamily<'a>>, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| StoreError::MissingColumnFamily(name.to_owned()))
}

/// The chunk of the block of `id` at window `start`, if one was sealed.
pub fn get(
    db: &Db,
    parts: &Partitions,
    id: u64,
    start: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let day = cf::day_start(start);
    if !parts.contains(day) {
        return Ok(None);
    }
    let family = family(db, &cf::blocks_name(day))?;
    Ok(db.get_cf(&family, keys::series_time(id, start))?)
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
    for day in parts.between(cf::day_start(from), to) {
        let name = cf::blocks_name(day);
        let mut it = db.raw_iterator_cf_opt(&family(db, &name)?, day_bounds(id, day, from, to));
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
    for day in parts
        .between(cf::day_start(from), i64::MAX)
        .into_iter()
        .rev()
    {
        let name = cf::blocks_name(day);
        let mut it =
            db.raw_iterator_cf_opt(&family(db, &name)?, day_bounds(id, day, from, i64::MAX));
        it.seek_to_last();
        if let Some((key, value)) = it.item() {
            return read_item(&name, key, value).map(Some);
        }
        it.status()?;
    }
    Ok(None)
}
