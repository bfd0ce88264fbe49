//! Deleting a time range of some series (`/api/query` with `delete`):
//! what changes on disk.
//!
//! [`StoreWriter::delete`](super::StoreWriter::delete) puts ONE write batch
//! together: per series, the sealed blocks of the range rewritten without
//! the doomed points (or deleted when nothing is left), the hour rollups of
//! those blocks recomputed, the days holding them refolded from their
//! hours, and, after all series, a delete record in the log. Only after
//! that commit does it remove the points from the head. A crash before the
//! commit leaves everything as it was; after it, replay applies the log's
//! delete record to the head in sequence order, so points of earlier
//! records are deleted again and points of later ones are kept.
//!
//! Hours and days wholly inside the range lose their rollups even where
//! no block is left to recompute them from (raw data kept for a shorter
//! time than rollups), so a deleted range reads as empty at every
//! resolution. Rollup families that do not exist (never written, or
//! dropped by retention) are not created again.

use std::collections::BTreeMap;

use rocksdb::WriteBatch;

use crate::model::RollupAgg;

use super::blocks::{self, Partitions};
use super::cf::{self, Partitioned};
use super::head::{window_start, WINDOW_MS};
use super::reader::stored_rollups;
use super::{chunk, keys, rollup};
use super::{Shared, StoreError};
use crate::model::DAY_MS;

/// Adds to `batch` what deleting the points of `id` in `[from, to]` (within
/// the storable range) changes in blocks and rollups, and returns how many
/// points (distinct timestamps, head and blocks together) go.
pub(super) fn rewrite(
    shared: &Shared,
    batch: &mut WriteBatch,
    id: u64,
    from: i64,
    to: i64,
) -> Result<u64, StoreError> {
    let doomed = |ts: i64| (from..=to).contains(&ts);
    let (first, last) = (window_start(from), window_start(to));
    // Timestamps the head loses, per window, to count each point once
    // where the head rewrites a sealed one.
    let mut head_gone: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for w in shared.head.read().snapshot(id, first, last) {
        let points = w
            .merge_over(None)
            .map_err(|e| StoreError::corrupt("head", &keys::series_time(id, w.start), e))?;
        let gone = points.iter().map(|p| p.timestamp_ms).filter(|&t| doomed(t));
        head_gone.insert(w.start, gone.collect());
    }
    let mut deleted = 0;
    let mut hours: BTreeMap<i64, Option<RollupAgg>> = BTreeMap::new();
    for block in blocks::scan(&shared.db, &shared.blocks, id, first, last)? {
        let start = block.start;
        let key = keys::series_time(id, start);
        let points =
            chunk::decode(&block.bytes).map_err(|e| StoreError::corrupt(&block.family, &key, e))?;
        let (gone, kept): (Vec<_>, Vec<_>) =
            points.into_iter().partition(|p| doomed(p.timestamp_ms));
        let mut gone: Vec<i64> = gone.iter().map(|p| p.timestamp_ms).collect();
        let from_block = gone.len();
        if let Some(head) = head_gone.remove(&start) {
            gone.extend(head);
            gone.sort_unstable();
            gone.dedup();
        }
        deleted += gone.len();
        if from_block == 0 {
            continue;
        }
        let family = shared.cf(&block.family)?;
        if kept.is_empty() {
            batch.delete_cf(&family, key);
        } else {
            batch.put_cf(&family, key, chunk::encode(&kept));
        }
        hours.insert(start, RollupAgg::of_points(start, &kept));
    }
    deleted += head_gone.values().map(Vec::len).sum::<usize>();

    let whole_hours = (window_start(from + WINDOW_MS - 1), window_start(to + 1));
    for hour in stored_rollups(shared, Partitioned::Hours, id, whole_hours.0, whole_hours.1)?.keys()
    {
        hours.entry(*hour).or_insert(None);
    }
    let whole_days = (cf::day_start(from + DAY_MS - 1), cf::day_start(to + 1));
    let mut days: BTreeMap<i64, Option<RollupAgg>> =
        stored_rollups(shared, Partitioned::Days, id, whole_days.0, whole_days.1)?
            .into_keys()
            .map(|day| (day, None))
            .collect();
    let mut touched: Vec<i64> = hours.keys().map(|&h| cf::day_start(h)).collect();
    touched.dedup();
    for day in touched {
        if (whole_days.0..whole_days.1).contains(&day) {
            days.insert(day, None);
            continue;
        }
        let mut day_hours = stored_rollups(shared, Partitioned::Hours, id, day, day + DAY_MS)?;
        for (&hour, agg) in hours.range(day..day + DAY_MS) {
            match agg {
                Some(agg) => day_hours.insert(hour, *agg),
                None => day_hours.remove(&hour),
            };
        }
        days.insert(day, rollup::fold(day, day_hours.into_values()));
    }
    for (start, agg) in hours {
        store_rollup(shared, batch, &shared.hours, id, start, agg);
    }
    for (start, agg) in days {
        store_rollup(shared, batch, &shared.days, id, start, agg);
    }
    Ok(deleted as u64)
}

/// Writes or (`None`) deletes the rollup of `id` at `start` in the
/// families that exist for it: written to the finest, whose copy readers
/// take, and deleted from the others.
fn store_rollup(
    shared: &Shared,
    batch: &mut WriteBatch,
    parts: &Partitions,
    id: u64,
    start: i64,
    agg: Option<RollupAgg>,
) {
    let key = keys::series_time(id, start);
    let mut agg = agg;
    for family in parts.holding(&shared.db, start) {
        match agg.take() {
            Some(agg) => batch.put_cf(&family, key, rollup::encode(&agg)),
            None => batch.delete_cf(&family, key),
        }
    }
}
