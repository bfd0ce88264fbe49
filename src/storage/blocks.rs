//! Time-partitioned column families, and the sealed blocks in them: one
//! chunk per (series, hour) in per-UTC-day or per-UTC-year families.
//!
//! A period's family (see [`Partitioned`]) is created the first time
//! something of that period is written, and found again on open by listing
//! the families. Keeping periods apart means retention drops a whole family
//! (no tombstones, no compaction churn) and a query touches only the
//! periods it asks for. [`Partitions`] is the in-memory list of periods of
//! one kind that have a family; only the writer changes it, readers take
//! short read locks.
//!
//! # Two period lengths
//!
//! Per-day families alone let one client create tens of thousands of
//! families (one per day since 1970) and a store that runs for years
//! gather thousands, each costing memory, files and open time. So data
//! goes to a fine family (day for blocks, month for hour rollups) only
//! while its period ends less than a horizon before now, else to the
//! coarse family of its year; and `migrate` moves fine families that have
//! aged past the horizon into their year, a bounded number of keys per
//! call, then drops them. The horizon is the kind's retention, so that
//! retention keeps dropping fine periods, within [`MIN_HORIZON_MS`] and
//! [`MAX_HORIZON_MS`]: a store holds at most about 400 day families, 14
//! month families, and three families per year that has data.
//!
//! A key lives in ONE family: writes go to [`Partitions::target`], and
//! the writer deletes a copy it finds elsewhere (a wall clock that jumped
//! back can make an old period recent again). A move puts the keys into
//! the year and deletes them from the day in one write batch, and every
//! reader creates its iterators fine families first: a reader whose fine
//! iterator predates the batch sees the keys there (and maybe again in
//! the year, identical; the fine copy wins), one whose fine iterator
//! follows it sees them in the year. Never in neither.
//!
//! A reader may list a period just before the writer drops it; its family
//! is then missing and reads as empty, which is what the dropped data was
//! about to become anyway (or has already been moved, see above).

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{AsColumnFamilyRef, BoundColumnFamily, Cache, ReadOptions, WriteBatch, WriteOptions};

use super::cf::{self, Partitioned, Period};
use super::keys;
use super::{Db, StoreError};
use crate::model::DAY_MS;

/// Shortest horizon: a month of day families (and two or three month
/// families) however short the retention, so recent data, which queries
/// read most, sits in small families.
pub const MIN_HORIZON_MS: i64 = 32 * DAY_MS;

/// Longest horizon: a retention longer than this drops data by whole
/// years once it is older than this, so up to a year late; in exchange
/// there are never more than about 400 day families.
pub const MAX_HORIZON_MS: i64 = 400 * DAY_MS;

/// Keys one `migrate` call moves at most: a few ms of the writer's time.
pub const MIGRATE_KEYS_PER_CALL: usize = 16 * 1024;

/// A sealed block read back.
pub struct Block {
    /// Start of its window.
    pub start: i64,
    /// The chunk.
    pub bytes: Vec<u8>,
    /// Name of the family it was read from.
    pub family: String,
}

pub type Family<'a> = Arc<BoundColumnFamily<'a>>;

/// Whether `a` and `b` are handles of the same family.
pub fn same(a: &Family, b: &Family) -> bool {
    a.inner() == b.inner()
}

/// The periods of one kind that have a family.
pub struct Partitions {
    kind: Partitioned,
    periods: RwLock<BTreeSet<Period>>,
    /// Periods whose family got [`cf::tune_open`] since the store opened:
    /// every one written to, since all writes find their family through
    /// `create`.
    tuned: Mutex<BTreeSet<Period>>,
    /// Fine periods ending more than this before now belong in their year.
    horizon_ms: i64,
    cache: Cache,
}

impl Partitions {
    /// `periods` are the periods of the families of `kind` found on open;
    /// new ones share the block cache `cache`. `retention_ms` is the
    /// kind's retention, which sets the horizon.
    pub fn new(
        kind: Partitioned,
        periods: impl IntoIterator<Item = Period>,
        retention_ms: Option<i64>,
        cache: Cache,
    ) -> Partitions {
        Partitions {
            kind,
            periods: RwLock::new(periods.into_iter().collect()),
            tuned: Mutex::new(BTreeSet::new()),
            horizon_ms: retention_ms
                .unwrap_or(MIN_HORIZON_MS)
                .clamp(MIN_HORIZON_MS, MAX_HORIZON_MS),
            cache,
        }
    }

    fn name(&self, period: Period) -> String {
        self.kind.name(period)
    }

    fn create<'a>(&self, db: &'a Db, period: Period) -> Result<Family<'a>, StoreError> {
        let name = self.name(period);
        if !self.periods.read().contains(&period) {
            db.create_cf(&name, &cf::cf_options(&name, &self.cache))?;
            self.periods.write().insert(period);
        }
        let family = db
            .cf_handle(&name)
            .ok_or(StoreError::MissingColumnFamily(name))?;
        if !self.tuned.lock().contains(&period) {
            cf::tune_open(db, &family)?;
            self.tuned.lock().insert(period);
        }
        Ok(family)
    }

    /// Whether the fine period `p` has aged into its year at `now_ms`.
    fn aged(&self, p: Period, now_ms: i64) -> bool {
        let spans = self.kind.spans();
        spans.len() > 1 && p.span == spans[0] && p.end() <= now_ms.saturating_sub(self.horizon_ms)
    }

    /// The family that data at `ts` is written to at `now_ms`, created if
    /// missing: the fine period's while it has a family or is recent,
    /// else the year's.
    pub fn target<'a>(&self, db: &'a Db, ts: i64, now_ms: i64) -> Result<Family<'a>, StoreError> {
        let spans = self.kind.spans();
        let fine = Period::of(spans[0], ts);
        if self.periods.read().contains(&fine) || !self.aged(fine, now_ms) {
            return self.create(db, fine);
        }
        self.create(db, Period::of(spans[spans.len() - 1], ts))
    }

    /// The families of the periods holding `ts`, fine first.
    pub fn holding<'a>(&self, db: &'a Db, ts: i64) -> Vec<Family<'a>> {
        let periods = self.periods.read();
        self.kind
            .spans()
            .iter()
            .map(|&span| Period::of(span, ts))
            .filter(|p| periods.contains(p))
            .filter_map(|p| db.cf_handle(&self.name(p)))
            .collect()
    }

    /// `(period, name, family)` of every period overlapping `[from, to]`
    /// that has a family: fine ones oldest first, then coarse ones oldest
    /// first (the order readers must create iterators in, see the module
    /// doc).
    pub fn covering<'a>(
        &self,
        db: &'a Db,
        from: i64,
        to: i64,
    ) -> Vec<(Period, String, Family<'a>)> {
        let mut periods = Vec::new();
        {
            let set = self.periods.read();
            for &span in self.kind.spans() {
                let first = Period::of(span, from);
                if first.start <= to {
                    periods.extend(set.range(first..=Period { span, start: to }).copied());
                }
            }
        }
        periods
            .into_iter()
            .filter_map(|p| {
                let name = self.name(p);
                let family = db.cf_handle(&name)?;
                Some((p, name, family))
            })
            .collect()
    }

    /// Drops every family whose whole period ends at or before `cutoff`;
    /// returns their names.
    pub fn drop_before(&self, db: &Db, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let expired: Vec<Period> = self
            .periods
            .read()
            .iter()
            .copied()
            .filter(|p| p.end() <= cutoff)
            .collect();
        expired.into_iter().map(|p| self.drop(db, p)).collect()
    }

    fn drop(&self, db: &Db, p: Period) -> Result<String, StoreError> {
        // Forget the period first, so no new reader looks for it.
        self.periods.write().remove(&p);
        // A family made again for the period is a new one to tune.
        self.tuned.lock().remove(&p);
        let name = self.name(p);
        db.drop_cf(&name)?;
        Ok(name)
    }

    /// Moves up to `max_keys` keys of the oldest fine family aged past the
    /// horizon at `now_ms` into its year, dropping the family once empty;
    /// returns the keys moved and the family dropped, if one was. Families
    /// ending by `cutoff` are left for retention to drop.
    pub fn migrate(
        &self,
        db: &Db,
        now_ms: i64,
        cutoff: i64,
        max_keys: usize,
        write_opts: &WriteOptions,
    ) -> Result<(usize, Option<String>), StoreError> {
        let aged = self
            .periods
            .read()
            .iter()
            .copied()
            .find(|&p| self.aged(p, now_ms) && p.end() > cutoff);
        let Some(fine) = aged else {
            return Ok((0, None));
        };
        let name = self.name(fine);
        let from = db
            .cf_handle(&name)
            .ok_or_else(|| StoreError::MissingColumnFamily(name.clone()))?;
        let spans = self.kind.spans();
        let to = self.create(db, Period::of(spans[spans.len() - 1], fine.start))?;
        let mut batch = WriteBatch::default();
        let mut moved = 0;
        let mut first: Option<Vec<u8>> = None;
        let mut last = Vec::new();
        let mut it = db.raw_iterator_cf(&from);
        it.seek_to_first();
        while let Some((key, value)) = it.item() {
            if moved == max_keys {
                break;
            }
            batch.put_cf(&to, key, value);
            first.get_or_insert_with(|| key.to_vec());
            last.clear();
            last.extend_from_slice(key);
            moved += 1;
            it.next();
        }
        it.status()?;
        let done = it.item().is_none();
        drop(it);
        if let Some(first) = first {
            // One range tombstone rather than a tombstone per key, so the
            // next call's iterator skips what this one moved. Nothing else
            // writes in between: the writer is the caller.
            last.push(0);
            batch.delete_range_cf(&from, first, last);
        }
        db.write_opt(batch, write_opts)?;
        let dropped = if done {
            drop(from);
            Some(self.drop(db, fine)?)
        } else {
            None
        };
        Ok((moved, dropped))
    }

    /// Family names of every period, fine ones first.
    pub fn names(&self) -> Vec<String> {
        self.periods.read().iter().map(|&p| self.name(p)).collect()
    }

    pub fn len(&self) -> usize {
        self.periods.read().len()
    }
}

/// The chunk of the block of `id` at window `start`, if one was sealed,
/// and the family holding it (the fine one if a move left two copies).
pub fn find<'a>(
    db: &'a Db,
    parts: &Partitions,
    id: u64,
    start: i64,
) -> Result<Option<(Family<'a>, Vec<u8>)>, StoreError> {
    let key = keys::series_time(id, start);
    for family in parts.holding(db, start) {
        if let Some(value) = db.get_cf(&family, key)? {
            return Ok(Some((family, value)));
        }
    }
    Ok(None)
}

/// The chunk of the block of `id` at window `start`, if one was sealed.
pub fn get(
    db: &Db,
    parts: &Partitions,
    id: u64,
    start: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(find(db, parts, id, start)?.map(|(_, value)| value))
}

/// Iterator bounds covering windows of `id` in `[from, to]` within
/// `period`.
fn bounds(id: u64, period: Period, from: i64, to: i64) -> ReadOptions {
    let (lower, upper) = window_keys(id, period, from, to);
    let mut ro = ReadOptions::default();
    ro.set_iterate_lower_bound(lower);
    ro.set_iterate_upper_bound(upper);
    ro
}

/// The first key of `id`'s windows in `[from, to]` within `period`, and
/// the first key past them.
pub fn window_keys(id: u64, period: Period, from: i64, to: i64) -> (Vec<u8>, Vec<u8>) {
    let lower = keys::series_time(id, from.max(period.start));
    // Windows start on whole hours, so `+ 1` never skips one.
    let last = to.min(period.end() - 1);
    let upper = keys::series_time(id, last.saturating_add(1));
    (lower.to_vec(), upper.to_vec())
}

fn read_item(name: &str, key: &[u8], value: &[u8]) -> Result<Block, StoreError> {
    let (_, start) = keys::parse_series_time(key)
        .ok_or_else(|| StoreError::corrupt(name, key, "malformed block key"))?;
    Ok(Block {
        start,
        bytes: value.to_vec(),
        family: name.to_owned(),
    })
}

/// Blocks of `id` whose windows start in `[from, to]`, oldest first, one
/// per window (the fine copy where a move shows two).
pub fn scan(
    db: &Db,
    parts: &Partitions,
    id: u64,
    from: i64,
    to: i64,
) -> Result<Vec<Block>, StoreError> {
    let mut out = Vec::new();
    for (period, name, family) in parts.covering(db, from, to) {
        let mut it = db.raw_iterator_cf_opt(&family, bounds(id, period, from, to));
        it.seek_to_first();
        while let Some((key, value)) = it.item() {
            out.push(read_item(&name, key, value)?);
            it.next();
        }
        it.status()?;
    }
    // Stable: of two copies, the fine one (listed first) stays.
    out.sort_by_key(|b| b.start);
    out.dedup_by_key(|b| b.start);
    Ok(out)
}

/// The newest block of `id` whose window starts at or after `from`.
pub fn newest(
    db: &Db,
    parts: &Partitions,
    id: u64,
    from: i64,
) -> Result<Option<Block>, StoreError> {
    let mut found: Option<Block> = None;
    let mut done = Vec::new();
    // Newest period of each length first; the first block found in a
    // length is that length's newest.
    for (period, name, family) in parts.covering(db, from, i64::MAX).into_iter().rev() {
        if done.contains(&period.span) {
            continue;
        }
        let mut it = db.raw_iterator_cf_opt(&family, bounds(id, period, from, i64::MAX));
        it.seek_to_last();
        if let Some((key, value)) = it.item() {
            let block = read_item(&name, key, value)?;
            done.push(period.span);
            // On a tie the fine copy, met last, wins.
            if found.as_ref().map_or(true, |f| block.start >= f.start) {
                found = Some(block);
            }
        }
        it.status()?;
    }
    Ok(found)
}
