//! Surveys of the store's figures that cost a walk to read: bytes per
//! column family (a RocksDB property read per family, so per day
//! partition), the WAL's size (a directory listing) and the count of stale
//! series (every series, and for one not in the head a seek per partition
//! back to its newest block).
//!
//! `stats`, `/api/stats` and `/metrics` show them from the latest
//! [`Findings`], so a request costs the same with ten series or ten
//! million, and a client repeating `stats` cannot make the daemon walk the
//! store once per line. Everything else those replies show (points,
//! connections, queue, series and head figures) is read live.
//!
//! Surveys run on the blocking pool, one at a time, and only while someone
//! reads: a read that finds the latest survey older than
//! `stats-refresh-secs` gets it as it is and starts the next one behind it.
//! Only the first read after startup waits for a survey. So these figures
//! are as old as the previous read or `stats-refresh-secs`, whichever is
//! longer, plus one survey's time: a scraper polling every 15 s sees them
//! about 15 s old. Each survey counts in `tsd.rtsd.storage.surveys`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::SharedBackend;
use crate::stats::Stats;
use crate::storage::{DiskUsage, StorageStats};

/// What one survey found.
#[derive(Debug)]
pub struct Findings {
    pub disk: Arc<DiskUsage>,
    /// Series without a point for `stale_after` before the survey; `None`
    /// if the store failed to answer (logged).
    pub stale_series: Option<usize>,
    taken: Instant,
}

/// The latest survey and the means to take the next.
pub struct Survey {
    store: SharedBackend,
    stats: Arc<Stats>,
    stale_after_ms: i64,
    refresh: Duration,
    latest: parking_lot::Mutex<Option<Arc<Findings>>>,
    /// Held while a survey runs, so only one does.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Survey {
    pub fn new(
        store: SharedBackend,
        stats: Arc<Stats>,
        stale_after_ms: i64,
        refresh: Duration,
    ) -> Survey {
        Survey {
            store,
            stats,
            stale_after_ms,
            refresh,
            latest: parking_lot::Mutex::new(None),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The latest findings; starts the next survey when they are older
    /// than the refresh interval, and waits only when there are none yet.
    pub async fn findings(self: &Arc<Self>) -> Arc<Findings> {
        if let Some(latest) = self.latest() {
            if latest.taken.elapsed() >= self.refresh {
                if let Ok(turn) = self.turn.clone().try_lock_owned() {
                    let survey = self.clone();
                    tokio::task::spawn_blocking(move || {
                        let _turn = turn;
                        survey.take();
                    });
                }
            }
            return latest;
        }
        let turn = self.turn.clone().lock_owned().await;
        // Another reader's survey may have finished while this one waited.
        if let Some(latest) = self.latest() {
            return latest;
        }
        let survey = self.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            survey.take()
        })
        .await
        .expect("a survey never panics")
    }

    /// The store's figures now, disk usage from `findings`.
    pub fn storage_stats(&self, findings: &Findings) -> StorageStats {
        self.store.stats_with(findings.disk.clone())
    }

    fn latest(&self) -> Option<Arc<Findings>> {
        self.latest.lock().clone()
    }

    /// Walks the store; the caller holds the turn.
    fn take(&self) -> Arc<Findings> {
        let cutoff = crate::model::now_ms().saturating_sub(self.stale_after_ms);
        let stale_series = match self.store.stale_series(None, cutoff) {
            Ok(found) => Some(found.len()),
            Err(e) => {
                tracing::warn!(error = %e, "counting stale series failed");
                None
            }
        };
        let findings = Arc::new(Findings {
            disk: Arc::new(self.store.disk_usage()),
            stale_series,
            taken: Instant::now(),
        });
        *self.latest.lock() = Some(findings.clone());
        self.stats.surveys.fetch_add(1, Relaxed);
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPoint, Sample, SeriesKey, Value, DAY_MS};
    use crate::storage::{Store, StoreOptions};

    /// A store with `series` series, each with one point a day for `days`
    /// days ending a day ago, sealed: that many day partitions (the data is
    /// recent enough to stay in day families), and every series stale.
    fn store_with(dir: &std::path::Path, series: usize, days: i64) -> crate::storage::StoreReader {
        let (mut w, r) = Store::open(dir, StoreOptions::default()).expect("store opens");
        let first = crate::model::now_ms() - (days + 1) * DAY_MS;
        for day in 0..days {
            let batch: Vec<Sample> = (0..series)
                .map(|i| Sample {
                    series: SeriesKey::new("m", [("host", format!("h{i}").as_str())]),
                    point: DataPoint {
                        timestamp_ms: first + day * DAY_MS,
                        value: Value::Int(i as i64),
                    },
                })
                .collect();
            w.append(&batch).expect("appends");
        }
        w.seal_all(crate::model::now_ms()).expect("seals");
        r
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_within_the_interval_share_one_survey() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 100, 20);
        assert_eq!(store.stats().partitions, 20);
        let stats = Arc::new(Stats::default());
        let hour = Duration::from_secs(3600);
        let survey = Arc::new(Survey::new(Arc::new(store), stats.clone(), 3_600_000, hour));

        let first = survey.findings().await;
        assert_eq!(first.stale_series, Some(100));
        assert!(first.disk.column_families.len() > 20);
        assert_eq!(stats.surveys.load(Relaxed), 1);
        for _ in 0..1000 {
            let again = survey.findings().await;
            assert!(Arc::ptr_eq(&first, &again));
            assert_eq!(survey.storage_stats(&again).series, 100);
        }
        assert_eq!(stats.surveys.load(Relaxed), 1, "reads walked the store");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_survey_is_answered_at_once_and_replaced_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 3, 2);
        let stats = Arc::new(Stats::default());
        let survey = Arc::new(Survey::new(
            Arc::new(store),
            stats.clone(),
            3_600_000,
            Duration::ZERO,
        ));
        let first = survey.findings().await;
        // Every later read finds it due: it gets the latest at once, and
        // one survey at a time runs behind it.
        let second = survey.findings().await;
        assert!(Arc::ptr_eq(&first, &second));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Arc::ptr_eq(&first, &survey.findings().await) {
            assert!(Instant::now() < deadline, "no survey behind the read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(stats.surveys.load(Relaxed) >= 2);
    }
}
