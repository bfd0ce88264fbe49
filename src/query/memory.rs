//! Series in memory behind the [`Source`] trait: the store the engine's
//! tests and the `query_body` fuzz invariants run queries against, so
//! they need no RocksDB.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::model::{DataPoint, NameKind, RollupAgg, RollupResolution, SeriesKey, SeriesMeta};
use crate::query::source::{Source, SourceError};

/// Series in memory. Rollups are computed from the points on demand, the
/// way the store promises them, or refused (`None`) to force the raw path.
#[derive(Default)]
pub(crate) struct MemSource {
    series: Vec<(SeriesMeta, Vec<DataPoint>)>,
    rollups_enabled: bool,
    /// `rollups` calls so far, so tests see which path a query took.
    pub(crate) rollup_reads: AtomicUsize,
    /// `points` calls so far.
    pub(crate) point_reads: AtomicUsize,
}

impl MemSource {
    pub(crate) fn new() -> Self {
        MemSource::default()
    }

    pub(crate) fn with_rollups(mut self) -> Self {
        self.rollups_enabled = true;
        self
    }

    /// Adds a series; `points` are (epoch ms, value), any order.
    #[cfg(test)]
    pub(crate) fn add(
        &mut self,
        metric: &str,
        tags: &[(&str, &str)],
        points: &[(i64, crate::model::Value)],
    ) {
        let pts = points
            .iter()
            .map(|&(t, v)| DataPoint {
                timestamp_ms: t,
                value: v,
            })
            .collect();
        self.add_points(metric, tags, pts);
    }

    /// Adds a series of points in any order.
    pub(crate) fn add_points(
        &mut self,
        metric: &str,
        tags: &[(&str, &str)],
        mut points: Vec<DataPoint>,
    ) {
        let key = SeriesKey::new(metric, tags.iter().copied());
        let id = self.series.len() as u64 + 1;
        points.sort_by_key(|p| p.timestamp_ms);
        self.series.push((SeriesMeta { id, key }, points));
    }

    fn data(&self, id: u64) -> &[DataPoint] {
        self.series
            .iter()
            .find(|(m, _)| m.id == id)
            .map_or(&[], |(_, p)| p.as_slice())
    }
}

impl Source for MemSource {
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        let found: Vec<SeriesMeta> = self
            .series
            .iter()
            .filter(|(m, _)| m.key.metric() == metric)
            .map(|(m, _)| m.clone())
            .collect();
        Ok((!found.is_empty()).then_some(found))
    }

    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError> {
        Ok(self
            .series
            .iter()
            .filter(|(m, _)| ids.contains(&m.id))
            .map(|(m, _)| m.clone())
            .collect())
    }

    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError> {
        self.point_reads.fetch_add(1, Relaxed);
        Ok(self
            .data(id)
            .iter()
            .filter(|p| start_ms <= p.timestamp_ms && p.timestamp_ms <= end_ms)
            .copied()
            .collect())
    }

    /// Each series is read on its own, through `points`.
    fn parallel_scans(&self) -> bool {
        true
    }

    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.rollup_reads.fetch_add(1, Relaxed);
        if !self.rollups_enabled {
            return Ok(None);
        }
        let width = match resolution {
            RollupResolution::Hour => 3_600_000,
            RollupResolution::Day => 86_400_000,
        };
        let in_range = |p: &&DataPoint| {
            let start = p.timestamp_ms - p.timestamp_ms.rem_euclid(width);
            start_ms <= start && start < end_ms
        };
        let points: Vec<DataPoint> = self.data(id).iter().filter(in_range).copied().collect();
        let out = points
            .chunk_by(|a, b| a.timestamp_ms.div_euclid(width) == b.timestamp_ms.div_euclid(width))
            .filter_map(|group| {
                let first = group[0].timestamp_ms;
                RollupAgg::of_points(first - first.rem_euclid(width), group)
            })
            .collect();
        Ok(Some(out))
    }

    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError> {
        Ok(self.series.iter().any(|(m, _)| match kind {
            NameKind::Metric => m.key.metric() == name,
            NameKind::TagKey => m.key.tags().any(|(k, _)| k == name),
            NameKind::TagValue => m.key.tags().any(|(_, v)| v == name),
        }))
    }
}
