//! The write half of the store: ingest batches in, sealed blocks out.
//!
//! [`StoreWriter`] is owned by the writer thread. It alone holds the series
//! key → id map (so ingest resolves ids without locks or RocksDB reads),
//! hands out series ids and log sequence numbers, mutates the head and
//! writes to RocksDB. See the module doc of [`super`] for the protocol that
//! keeps the head durable; this file implements it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::RwLockReadGuard;

use rocksdb::{DBRawIteratorWithThreadMode, FlushOptions, WriteBatch, WriteOptions};

use crate::model::{DataPoint, IdTag, RollupAgg, Sample, SeriesKey, DAY_MS, MAX_TIMESTAMP_MS};

use super::cf::Partitioned;
use super::chunk;
use super::head::{window_start, Head, Window, WINDOW_MS};
use super::index::{self, IndexFamilies, NewNames};
use super::journal::Journal;
use super::log::{self, Record, RecordEncoder, Watermark};
use super::series_index::SeriesIndex;
use super::{blocks, cf, delete, keys, rollup};
use super::{Db, Shared, StoreError, StoreOptions};

/// What one `append` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    pub points: usize,
    pub new_series: usize,
}

/// Series ids stay below 2^62: log records shift them left by two.
const MAX_SERIES_ID: u64 = (1 << 62) - 1;

/// The journal's directory inside the store's.
pub const JOURNAL_DIR: &str = "journal";

/// Windows sealed per RocksDB commit: bounds the write batch (a block is a
/// few hundred bytes) while amortising the commit.
const SEAL_BATCH_WINDOWS: usize = 4096;

/// Windows one `seal_due` call seals at most. Sealing costs tens of µs per
/// window, so this keeps a call well under a second; a million series'
/// hour seals over a minute or so of writer ticks, well within the grace.
pub const SEAL_WINDOWS_PER_CALL: usize = 16 * 1024;

/// The writer's handle on the store. Not `Clone`: there is one writer.
pub struct StoreWriter {
    pub(super) shared: Arc<Shared>,
    ids: foldhash::HashMap<SeriesKey, u64>,
    /// This writer's mark on the ids it caches in keys; `None` resolves
    /// every key through `ids`.
    id_tag: Option<IdTag>,
    next_id: u64,
    /// Sequence number of the next log record.
    next_seq: u64,
    /// Lowest log sequence number not yet deleted.
    log_floor: u64,
    /// Where records of points go; delete records go to the `log` family.
    journal: Journal,
    record: RecordEncoder,
    /// The current batch with ids resolved, kept to fill the head after
    /// the commit; reused so ingest does not allocate per batch.
    resolved: Vec<(u64, DataPoint)>,
    /// Series created by the current batch, forgotten again if their
    /// commit fails.
    new_keys: Vec<SeriesKey>,
    /// Series committed since the last successful `append`: a batch whose
    /// series commit held but whose record did not counts them when its
    /// retry goes through.
    new_series: usize,
    write_opts: WriteOptions,
    seal_grace_ms: i64,
    head_memory_limit: usize,
}

fn ts_in_range(ts: i64) -> bool {
    (0..=MAX_TIMESTAMP_MS).contains(&ts)
}

impl StoreWriter {
    /// Loads the series map and replays the log into the head.
    pub(super) fn open(
        shared: Arc<Shared>,
        opts: &StoreOptions,
    ) -> Result<StoreWriter, StoreError> {
        let (ids, max_id) = index::load_ids(&shared)?;
        let stored_next = match shared.meta(keys::META_NEXT_SERIES_ID)? {
            Some(v) => keys::parse_u64(&v).ok_or_else(|| {
                StoreError::corrupt(
                    cf::META,
                    keys::META_NEXT_SERIES_ID,
                    "next series id is not 8 bytes",
                )
            })?,
            None => 1,
        };
        let watermark = match shared.meta(keys::META_SEAL_WATERMARK)? {
            Some(v) => Some(Watermark::decode(&v).ok_or_else(|| {
                StoreError::corrupt(
                    cf::META,
                    keys::META_SEAL_WATERMARK,
                    "seal watermark is not 16 bytes",
                )
            })?),
            None => None,
        };
        *shared.series_index.write() = SeriesIndex::build(ids.iter().map(|(k, &id)| (k, id)));
        let next_id = stored_next.max(max_id + 1);
        let (journal, replayed) = replay(&shared, next_id, watermark, opts.sync_writes)?;
        let next_seq = replayed.next_seq.max(watermark.map_or(0, |w| w.seq));
        shared.series.store(ids.len(), Relaxed);
        shared.log_records.store(replayed.records, Relaxed);
        tracing::info!(
            series = ids.len(),
            log_records = replayed.records,
            journal_bytes_cut = replayed.cut,
            head_points = shared.head.read().points(),
            "store opened"
        );
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(opts.sync_writes);
        Ok(StoreWriter {
            shared,
            ids,
            id_tag: IdTag::unique(),
            next_id,
            next_seq,
            log_floor: replayed.first_seq.unwrap_or(next_seq),
            journal,
            record: RecordEncoder::default(),
            resolved: Vec::new(),
            new_keys: Vec::new(),
            new_series: 0,
            write_opts,
            seal_grace_ms: opts.seal_grace_ms,
            head_memory_limit: opts.head_memory_limit,
        })
    }

    /// Every series the store holds.
    pub fn series_keys(&self) -> impl Iterator<Item = &SeriesKey> {
        self.ids.keys()
    }

    /// Resolves series ids (new series get ids and index entries, committed
    /// in one RocksDB write batch), appends the batch's record to the
    /// journal, then to head chunks. When it returns Ok, the batch survives
    /// kill -9; on error none of its points was stored (its new series
    /// may have been).
    pub fn append(&mut self, samples: &[Sample]) -> Result<AppendStats, StoreError> {
        if samples.is_empty() {
            return Ok(AppendStats::default());
        }
        let first_new_id = self.next_id;
        let seq = match self.commit(samples) {
            Ok(seq) => seq,
            Err(e) => {
                // Only series whose commit failed are still here; their
                // ids are given out again.
                if !self.new_keys.is_empty() {
                    for key in self.new_keys.drain(..) {
                        self.ids.remove(&key);
                    }
                    self.next_id = first_new_id;
                }
                return Err(e);
            }
        };
        {
            let mut head = self.shared.head.write();
            for &(id, p) in &self.resolved {
                head.push(id, p, seq);
            }
        }
        self.shared.log_records.fetch_add(1, Relaxed);
        Ok(AppendStats {
            points: samples.len(),
            new_series: std::mem::take(&mut self.new_series),
        })
    }

    /// Resolves and encodes `samples`, commits their new series and
    /// journals their record, without touching the head; returns the
    /// record's sequence number.
    fn commit(&mut self, samples: &[Sample]) -> Result<u64, StoreError> {
        let shared = Arc::clone(&self.shared);
        let mut batch = WriteBatch::default();
        let families = IndexFamilies::new(&shared)?;
        // Only read when a series is new, which most commits have none of.
        let mut names: Option<(RwLockReadGuard<SeriesIndex>, foldhash::HashSet<Vec<u8>>)> = None;
        self.new_keys.clear();
        self.resolved.clear();
        // Exact: commits are of about one size, and doubling would hold
        // twice that for good.
        self.resolved.reserve_exact(samples.len());
        self.record.start();
        let first_new_id = self.next_id;
        for s in samples {
            let ts = s.point.timestamp_ms;
            if !ts_in_range(ts) {
                return Err(StoreError::TimestampOutOfRange(ts));
            }
            let cached = self.id_tag.and_then(|tag| s.series.cached_id(tag));
            let id = match cached.or_else(|| self.ids.get(&s.series).copied()) {
                Some(id) => {
                    // A series new in this commit is cached by `append`
                    // once the commit holds: a failed one gives its ids
                    // out again.
                    if let (None, Some(tag), true) = (cached, self.id_tag, id < first_new_id) {
                        s.series.cache_id(tag, id);
                    }
                    id
                }
                None => {
                    let id = self.next_id;
                    if id > MAX_SERIES_ID {
                        return Err(StoreError::SeriesIdsExhausted(id));
                    }
                    self.next_id += 1;
                    let (index, written) = names
                        .get_or_insert_with(|| (shared.series_index.read(), Default::default()));
                    let names = NewNames { index, written };
                    index::add_series(&mut batch, &families, &s.series, id, names);
                    self.ids.insert(s.series.clone(), id);
                    self.new_keys.push(s.series.clone());
                    id
                }
            };
            self.record.push(id, s.point);
            self.resolved.push((id, s.point));
        }
        // Before `publish_new_series` takes the index for writing.
        drop(names);
        if !self.new_keys.is_empty() {
            batch.put_cf(
                &shared.cf(cf::META)?,
                keys::META_NEXT_SERIES_ID,
                keys::u64_key(self.next_id),
            );
            // Before the record: replay must find every id it names.
            shared.db.write_opt(batch, &self.write_opts)?;
            self.publish_new_series(first_new_id);
        }
        // Taken even if the append fails: a torn frame may hold it.
        let seq = self.next_seq;
        self.next_seq += 1;
        self.journal
            .append(seq, self.record.bytes())
            .map_err(StoreError::Journal)?;
        Ok(seq)
    }

    /// Makes the series of `new_keys`, numbered from `first_id` in their
    /// order and now committed, known to readers.
    fn publish_new_series(&mut self, first_id: u64) {
        self.new_series += self.new_keys.len();
        let mut index = self.shared.series_index.write();
        for (id, key) in (first_id..).zip(self.new_keys.drain(..)) {
            // Only now: the ids of a commit that failed are given again.
            if let Some(tag) = self.id_tag {
                key.cache_id(tag, id);
            }
            index.insert(id, key);
        }
        self.shared.series.store(self.ids.len(), Relaxed);
    }

    /// Deletes the points of series `ids` with timestamps in `[from, to]`
    /// (ms, inclusive) from blocks, rollups and the head, and returns how
    /// many went. Blocks, rollups and a log record of the delete commit in
    /// ONE write batch (see `super::delete`): when it returns Ok, the
    /// delete survives kill -9; on error nothing changed. Ids the store
    /// never handed out are ignored.
    pub fn delete(&mut self, ids: &[u64], from: i64, to: i64) -> Result<u64, StoreError> {
        let (from, to) = (from.max(0), to.min(MAX_TIMESTAMP_MS));
        let mut ids: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| (1..self.next_id).contains(&id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if from > to || ids.is_empty() {
            return Ok(0);
        }
        let record = log::Delete { from, to, ids };
        let shared = Arc::clone(&self.shared);
        let mut batch = WriteBatch::default();
        let mut deleted = 0;
        for &id in &record.ids {
            deleted += delete::rewrite(&shared, &mut batch, id, from, to)?;
        }
        let log_cf = shared.cf(cf::LOG)?;
        batch.put_cf(&log_cf, keys::u64_key(self.next_seq), record.encode());
        shared.db.write_opt(batch, &self.write_opts)?;
        self.next_seq += 1;
        shared.log_records.fetch_add(1, Relaxed);
        let mut head = shared.head.write();
        for &id in &record.ids {
            head.delete(id, from, to)
                .map_err(|e| StoreError::corrupt("head", &keys::u64_key(id), e))?;
        }
        Ok(deleted)
    }

    /// Seals head windows that are due and deletes the log records no
    /// longer needed; returns how many windows sealed. A window is due when
    /// its end plus the grace has passed (`now_ms`), when it starts more
    /// than the grace in the future (a client with a wrong clock must not
    /// pin the log until then), or, oldest first, while the head is over
    /// its memory limit. Does at most [`SEAL_WINDOWS_PER_CALL`] windows, so
    /// the writer keeps ingesting between calls while a large hour seals.
    pub fn seal_due(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        // Windows starting before `bound` end more than `grace` ago.
        let bound = now_ms
            .saturating_sub(self.seal_grace_ms)
            .saturating_sub(WINDOW_MS);
        let future = now_ms.saturating_add(self.seal_grace_ms);
        let targets = {
            let head = self.shared.head.read();
            let excess = head.bytes().saturating_sub(self.head_memory_limit);
            if !head.any_outside(bound, future) && excess == 0 {
                return Ok(0);
            }
            let mut targets = head.outside(bound, future, SEAL_WINDOWS_PER_CALL);
            if excess > 0 {
                // Down to three quarters of the limit, so the next batches
                // do not trigger another early seal at once.
                let goal = excess + self.head_memory_limit / 4;
                targets.extend(head.oldest_holding(goal, SEAL_WINDOWS_PER_CALL));
            }
            targets
        };
        self.seal(targets, bound, now_ms)
    }

    /// Seals every open window into the families due at `now_ms`, for
    /// shutdown.
    pub fn seal_all(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let targets = self
            .shared
            .head
            .read()
            .outside(i64::MAX, i64::MAX, usize::MAX);
        self.seal(targets, i64::MAX, now_ms)
    }

    /// Seals `targets` into the families due at `now_ms`, then truncates
    /// the log, recording a watermark at `bound` if no window starting
    /// before it is left open.
    fn seal(
        &mut self,
        mut targets: Vec<(u64, i64)>,
        bound: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        targets.sort_unstable();
        targets.dedup();
        let mut sealed = 0;
        // A series' windows of one day may be split between commits: each
        // commit refolds the day from what the previous ones stored.
        for batch in targets.chunks(SEAL_BATCH_WINDOWS) {
            sealed += self.seal_batch(batch, now_ms)?;
        }
        let all_sealed = self
            .shared
            .head
            .read()
            .oldest_start()
            .map_or(true, |s| s >= bound);
        // The writer appends nothing while sealing, so every record below
        // `next_seq` is accounted for.
        let watermark = all_sealed.then_some(Watermark {
            seq: self.next_seq,
            before_start: bound,
        });
        self.truncate_log(watermark)?;
        Ok(sealed)
    }

    /// Seals `targets` (sorted) in one commit, then drops them from the
    /// head.
    fn seal_batch(&self, targets: &[(u64, i64)], now_ms: i64) -> Result<usize, StoreError> {
        let shared = &*self.shared;
        let mut batch = WriteBatch::default();
        let mut sealed = Vec::with_capacity(targets.len());
        {
            // The writer is the head's only mutator, so a read lock is
            // enough and readers keep going while blocks are built.
            let head = shared.head.read();
            let same_day = |a: &(u64, i64), b: &(u64, i64)| {
                a.0 == b.0 && cf::day_start(a.1) == cf::day_start(b.1)
            };
            // The family a day's data of `kind` goes to; none when the
            // whole day is past the kind's retention: writing it would only
            // create families (a year's, for old data) that nobody reads.
            let home = |kind, day: i64| {
                if day + DAY_MS <= shared.retention.cutoff(kind, now_ms) {
                    return Ok(None);
                }
                shared
                    .partitions(kind)
                    .target(&shared.db, day, now_ms)
                    .map(Some)
            };
            for group in targets.chunk_by(same_day) {
                let id = group[0].0;
                let day = cf::day_start(group[0].1);
                let blocks_cf = home(Partitioned::Blocks, day)?;
                let hour_cf = home(Partitioned::Hours, day)?;
                let mut hours = Vec::with_capacity(group.len());
                for &(_, start) in group {
                    let Some(window) = head.window(id, start) else {
                        continue;
                    };
                    let (chunk, agg, old_home) = seal_window(shared, id, window)?;
                    let key = keys::series_time(id, start);
                    if let Some(family) = &blocks_cf {
                        // A clock that jumped back can make the target
                        // differ from where the block was; a key lives in
                        // one family.
                        if let Some(old) = old_home.filter(|f| !blocks::same(f, family)) {
                            batch.delete_cf(&old, key);
                        }
                        batch.put_cf(family, key, &chunk);
                    }
                    if let Some(family) = &hour_cf {
                        batch.put_cf(family, key, rollup::encode(&agg));
                    }
                    hours.push(agg);
                    sealed.push((id, start));
                }
                // Rewritten for every seal while the day is open, not once
                // when it ends: the reader serves stored days as they are
                // and folds hours itself only for days with head data, so
                // a day of sealed hours with no day record would go
                // missing. The older versions cost disk only until
                // compaction merges them away (`disk_tests`, flushing
                // between two hours' seals, 16,384 of 40,000 day records
                // written twice: 1.98 MB of day rollups after the flushes,
                // 1.32 MB compacted, the same as when written once).
                let day_agg = fold_day(shared, id, day, hours)?;
                if let (Some(agg), Some(family)) = (day_agg, home(Partitioned::Days, day)?) {
                    batch.put_cf(&family, keys::series_time(id, day), rollup::encode(&agg));
                }
            }
        }
        shared.db.write_opt(batch, &self.write_opts)?;
        let mut head = shared.head.write();
        for &(id, start) in &sealed {
            head.remove(id, start);
        }
        shared.sealed_blocks.fetch_add(sealed.len() as u64, Relaxed);
        Ok(sealed.len())
    }

    /// Deletes log records below the oldest one an open window needs and
    /// records what the seal proved, if anything.
    fn truncate_log(&mut self, watermark: Option<Watermark>) -> Result<(), StoreError> {
        let keep_from = self.shared.head.read().min_seq().unwrap_or(self.next_seq);
        let log_cf = self.shared.cf(cf::LOG)?;
        let mut batch = WriteBatch::default();
        let truncate = keep_from > self.log_floor;
        if truncate {
            batch.delete_range_cf(
                &log_cf,
                keys::u64_key(self.log_floor),
                keys::u64_key(keep_from),
            );
        }
        if let Some(w) = watermark {
            let meta = self.shared.cf(cf::META)?;
            batch.put_cf(&meta, keys::META_SEAL_WATERMARK, w.encode());
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.shared.db.write_opt(batch, &self.write_opts)?;
        if truncate {
            // Deleting files bypasses the WAL, so the blocks that replace
            // their records must be on disk first: without `sync_writes`
            // they may still sit in the OS's cache of the WAL, and a power
            // cut would lose them while the files stay deleted.
            self.shared.db.flush_wal(true)?;
            // Drop flushed files wholly below the cut now instead of waiting
            // for compaction to notice the range tombstone (both ends
            // inclusive; level 0 is left to compaction).
            self.shared.db.delete_file_in_range_cf(
                &log_cf,
                keys::u64_key(0),
                keys::u64_key(keep_from - 1),
            )?;
            self.journal
                .truncate(keep_from, self.next_seq)
                .map_err(StoreError::Journal)?;
            self.log_floor = keep_from;
        }
        self.shared
            .log_records
            .store(self.next_seq - self.log_floor, Relaxed);
        Ok(())
    }

    /// Drops every partitioned family whose whole period lies before its
    /// kind's retention at `now_ms`, and returns their names. RocksDB
    /// deletes their files once no reader holds them any more.
    pub fn expire(&mut self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let shared = &*self.shared;
        let mut dropped = Vec::new();
        for kind in Partitioned::ALL {
            let cutoff = shared.retention.cutoff(kind, now_ms);
            dropped.extend(shared.partitions(kind).drop_before(&shared.db, cutoff)?);
        }
        if !dropped.is_empty() {
            tracing::info!(families = ?dropped, "dropped expired partitions");
        }
        Ok(dropped)
    }

    /// Moves up to [`blocks::MIGRATE_KEYS_PER_CALL`] keys of fine
    /// partitions that have aged past their horizon at `now_ms` into their
    /// year's family (see `blocks`), dropping each once empty; returns the
    /// keys moved. Readers see every key throughout.
    pub fn migrate(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        let shared = &*self.shared;
        let mut moved = 0;
        for kind in Partitioned::ALL {
            while moved < blocks::MIGRATE_KEYS_PER_CALL {
                let budget = blocks::MIGRATE_KEYS_PER_CALL - moved;
                let cutoff = shared.retention.cutoff(kind, now_ms);
                let (keys, dropped) = shared.partitions(kind).migrate(
                    &shared.db,
                    now_ms,
                    cutoff,
                    budget,
                    &self.write_opts,
                )?;
                moved += keys;
                match dropped {
                    Some(family) => tracing::info!(family, "moved aged partition into its year"),
                    None => break,
                }
            }
        }
        Ok(moved)
    }

    /// Flushes memtables and the WAL, so the next open replays nothing,
    /// and compacts the log away. For shutdown, after `seal_all`.
    pub fn flush(&self) -> Result<(), StoreError> {
        let s = &*self.shared;
        let families = s
            .family_names()
            .iter()
            .map(|n| s.cf(n))
            .collect::<Result<Vec<_>, _>>()?;
        s.db.flush_cfs_opt(
            &families.iter().collect::<Vec<_>>(),
            &FlushOptions::default(),
        )?;
        // After `seal_all` the log is one range tombstone over flushed
        // records; compacting it leaves nothing on disk.
        s.db.compact_range_cf(&s.cf(cf::LOG)?, None::<&[u8]>, None::<&[u8]>);
        s.db.flush_wal(true)?;
        Ok(())
    }
}

/// The chunk to store for `window` of series `id`, its hour's rollup, and
/// the family the block sealed before lives in, if any: the head's points,
/// laid over that block if there is one.
fn seal_window<'a>(
    shared: &'a Shared,
    id: u64,
    window: &Window,
) -> Result<(Vec<u8>, RollupAgg, Option<blocks::Family<'a>>), StoreError> {
    let start = window.start();
    let (home, old) = match blocks::find(&shared.db, &shared.blocks, id, start) {
        Ok(Some((family, old))) => (Some(family), Some(old)),
        Ok(None) => (None, None),
        Err(e @ StoreError::Corrupt { .. }) => {
            // Refusing to seal would keep the window (and the log) forever;
            // the unreadable block is lost either way.
            tracing::error!(error = %e, id, start, "replacing unreadable block");
            (None, None)
        }
        Err(e) => return Err(e),
    };
    let corrupt =
        |e: chunk::ChunkError| StoreError::corrupt("head", &keys::series_time(id, start), e);
    let points = match (old, window.in_order_chunk()) {
        (None, Some(chunk)) => chunk::decode(&chunk).map_err(corrupt)?,
        (old, _) => window
            .snapshot()
            .merge_over(old.as_deref())
            .map_err(corrupt)?,
    };
    // Re-encoded even when the head's chunk would do: sealed, it may pack.
    let chunk = chunk::encode(&points);
    let agg = RollupAgg::of_points(start, &points).ok_or_else(|| {
        StoreError::corrupt("head", &keys::series_time(id, start), "empty window")
    })?;
    Ok((chunk, agg, home))
}

/// The rollup of the day starting at `day` for `id`, given the hours being
/// sealed now (which replace any stored ones): all hours folded in order.
fn fold_day(
    shared: &Shared,
    id: u64,
    day: i64,
    new_hours: Vec<RollupAgg>,
) -> Result<Option<RollupAgg>, StoreError> {
    if new_hours.is_empty() {
        return Ok(None);
    }
    let mut hours =
        super::reader::stored_rollups(shared, Partitioned::Hours, id, day, day + DAY_MS)?;
    hours.extend(new_hours.into_iter().map(|h| (h.start_ms, h)));
    Ok(rollup::fold(day, hours.into_values()))
}

struct Replayed {
    first_seq: Option<u64>,
    next_seq: u64,
    records: u64,
    /// Bytes of torn journal tails cut off.
    cut: u64,
}

/// Replays the log (the journal's records and the `log` family's, merged
/// by sequence number) into the head, skipping points the watermark proves
/// sealed, and opens the journal for appends. `next_id` bounds the valid
/// series ids.
fn replay(
    shared: &Shared,
    next_id: u64,
    watermark: Option<Watermark>,
    sync: bool,
) -> Result<(Journal, Replayed), StoreError> {
    let log_cf = shared.cf(cf::LOG)?;
    let mut family = shared.db.raw_iterator_cf(&log_cf);
    family.seek_to_first();
    let mut into = Replay {
        head: &mut shared.head.write(),
        next_id,
        watermark,
        out: Replayed {
            first_seq: None,
            next_seq: 0,
            records: 0,
            cut: 0,
        },
    };
    let dir = shared.dir.join(JOURNAL_DIR);
    let (journal, journaled) = Journal::open(&dir, sync, |seq, record| {
        into.family_below(&mut family, seq)?;
        into.apply(JOURNAL_DIR, seq, record)
    })?;
    into.family_below(&mut family, u64::MAX)?;
    family.status()?;
    into.out.cut = journaled.cut;
    Ok((journal, into.out))
}

/// Where replayed records go.
struct Replay<'a> {
    head: &'a mut Head,
    next_id: u64,
    watermark: Option<Watermark>,
    out: Replayed,
}

impl Replay<'_> {
    /// Applies the `log` family's records below `before`, in order.
    fn family_below(
        &mut self,
        family: &mut DBRawIteratorWithThreadMode<'_, Db>,
        before: u64,
    ) -> Result<(), StoreError> {
        while let Some((k, v)) = family.item() {
            let seq = keys::parse_u64(k)
                .ok_or_else(|| StoreError::corrupt(cf::LOG, k, "sequence number is not 8 bytes"))?;
            if seq >= before {
                break;
            }
            self.apply(cf::LOG, seq, v)?;
            family.next();
        }
        Ok(())
    }

    /// Applies record `seq`, read from `source`.
    fn apply(&mut self, source: &str, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        let bad = |detail: String| StoreError::corrupt(source, &keys::u64_key(seq), detail);
        let known = |id: u64| {
            if id == 0 || id >= self.next_id {
                return Err(bad(format!("unknown series id {id}")));
            }
            Ok(id)
        };
        match log::decode(record).map_err(|e| bad(e.to_string()))? {
            Record::Points(points) => {
                for item in points {
                    let (id, p) = item.map_err(|e| bad(e.to_string()))?;
                    known(id)?;
                    if !ts_in_range(p.timestamp_ms) {
                        return Err(bad(format!("timestamp {} out of range", p.timestamp_ms)));
                    }
                    let sealed = self
                        .watermark
                        .is_some_and(|w| w.covers(seq, window_start(p.timestamp_ms)));
                    if !sealed {
                        self.head.push(id, p, seq);
                    }
                }
            }
            Record::Delete(d) => {
                for &id in &d.ids {
                    self.head
                        .delete(known(id)?, d.from, d.to)
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        self.out.first_seq.get_or_insert(seq);
        self.out.next_seq = seq + 1;
        self.out.records += 1;
        Ok(())
    }
}
