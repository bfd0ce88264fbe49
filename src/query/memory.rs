//! Series in memory behind the [`Source`] trait: the store the engine's
//! tests and the `query_body` fuzz invariants run queries against, so
//! they need no RocksDB.

use std::cell::Cell;

use crate::model::{DataPoint, NameKind, RollupAgg, RollupResolution, SeriesKey, SeriesMeta};
use crate::query::source::{Source, SourceError};

/// Series in memory. Rollups are computed from the points on demand, the
/// way the store promises them, or refused (`None`) to force the raw path.
#[derive(Default)]
pub(crate) struct MemSource {
    series: Vec<(SeriesMeta, Vec<DataPoint>)>,
    rollups_enabled: bool,
    /// `rollups` calls so far, so tests see which path a query took.
    pub(crate) rollup_reads: Cell<usize>,
    /// `points` calls so far.
    pub(crate) point_reads: Cell<usize>,
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
        self.point_reads.set(self.point_reads.get() + 1);
        Ok(self
            .data(id)
            .iter()
            .filter(|p| start_ms <= p.timestamp_ms && p.timestamp_ms <= end_ms)
            .copied()
            .collect())
    }

    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.rollup_reads.set(self.rollup_reads.get() + 1);
        if !self.rollups_enabled {
            return Ok(None);
        }
        let width = match resolution {
            RollupResolution::Hour => 3_600_000,
            RollupResolution::Day => 86_400_000,
        };
        let mut out: Vec<RollupAgg> = Vec::new();
        for p in self.data(id) {
            let start = p.timestamp_ms - p.timestamp_ms.rem_euclid(width);
            if start < start_ms || start >= end_ms {
                continue;
            }
            let v = p.value.as_f64();
            match out.last_mut() {
                Some(a) if a.start_ms == start => {
                    a.count += 1;
                    a.sum += v;
                    a.min = a.min.min(v);
                    a.max = a.max.max(v);
                    a.sum_sq += v * v;
                    a.last = *p;
                }
                _ => out.push(RollupAgg {
                    start_ms: start,
                    count: 1,
                    sum: v,
                    min: v,
                    max: v,
                    sum_sq: v * v,
                    first: *p,
                    last: *p,
                }),
            }
        }
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
