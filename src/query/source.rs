//! What the query engine needs from storage, as a trait, so the engine stays
//! pure and testable and the store (`storage::StoreReader`) implements it.

use std::ops::ControlFlow;

use crate::model::{DataPoint, Doubles, NameKind, RollupAgg, RollupResolution, SeriesMeta};

#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct SourceError(pub String);

/// Read access to stored series. Implementations must be cheap to call
/// concurrently from many requests, and from several threads of one
/// (which read a group's series in parallel).
pub trait Source: Sync {
    /// Every series of `metric`, or `None` if no such metric was ever written.
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError>;

    /// The series of `metric` that carry tag `select.key` with a value
    /// `select` accepts, and possibly others: the caller applies its
    /// filters to what comes back. `None` if no such metric was ever
    /// written. A store with posting lists visits only the series that
    /// can match; the default returns every series of the metric.
    fn series_selected(
        &self,
        metric: &str,
        select: &TagSelect<'_>,
    ) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        let _ = select;
        self.series_of_metric(metric)
    }

    /// The series with these ids (OpenTSDB's TSUIDs); unknown ids are
    /// left out.
    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError>;

    /// Points of series `id` with `start_ms <= ts <= end_ms`, sorted by time,
    /// one per timestamp (the last write wins), sealed and unsealed data merged.
    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError>;

    /// Opens a scan of the points of the series `ids` with
    /// `start_ms <= ts <= end_ms`, for reading them one series at a time
    /// without collecting them: what [`points`](Self::points) returns,
    /// handed over in slices. The default reads through `points`; the store
    /// decodes each block into one reused buffer.
    fn scan_points<'a>(
        &'a self,
        ids: &[u64],
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn PointScan + 'a> {
        let _ = ids;
        Box::new(ByPoints {
            source: self,
            start_ms,
            end_ms,
        })
    }

    /// Whether one query may read a group's series through several
    /// [`scan_points`](Self::scan_points) at once, one per thread, each
    /// opened for every series but asked for only some. True only where
    /// that reads nothing twice, as for a store that seeks to each series
    /// it is asked for; a store that reads many series per request would
    /// read every one once per scan. False by default.
    fn parallel_scans(&self) -> bool {
        false
    }

    /// Opens scans for threads that share the reading of `ids`: each call
    /// of the function returned opens one, reading as
    /// [`scan_points`](Self::scan_points) would, sharing with its siblings
    /// what the store takes into memory up front. The default opens each
    /// through `scan_points`.
    fn sibling_scans<'a>(&'a self, ids: &'a [u64], start_ms: i64, end_ms: i64) -> ScanOpener<'a> {
        Box::new(move || self.scan_points(ids, start_ms, end_ms))
    }

    /// Aggregates of series `id` for every interval of `resolution` that
    /// starts in `[start_ms, end_ms)` and holds data, sorted by start. They
    /// equal what the raw points give, unsealed data included. `None` means
    /// the store cannot answer from rollups here and the caller reads points.
    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError>;

    /// Opens a read of the rollups of the series `ids`, for reading them
    /// one series at a time: what [`rollups`](Self::rollups) answers for
    /// each. The default calls `rollups` per series; a store that answers
    /// better in bulk (one statement for many series) overrides it.
    fn scan_rollups<'a>(
        &'a self,
        ids: &[u64],
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn RollupScan + 'a> {
        let _ = ids;
        Box::new(ByRollups {
            source: self,
            resolution,
            start_ms,
            end_ms,
        })
    }

    /// Opens a read of the series `ids` downsampled by the store itself:
    /// per series, one aggregate per bucket `[k * step_ms, (k + 1) * step_ms)`
    /// of the points with `start_ms <= ts < end_ms`, sorted by start, each
    /// carrying its `start_ms` (the bucket's), `count` and the field
    /// `buckets.field` names; the other fields mean nothing. An answer must
    /// give, through the engine's rollup arithmetic, bit for bit what the
    /// raw points give, so a store answers `None` for a series (the caller
    /// then reads its points) wherever it cannot guarantee that. `None`
    /// for the whole read: the store does not aggregate, as the default.
    fn scan_buckets<'a>(
        &'a self,
        ids: &[u64],
        buckets: Buckets,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<Box<dyn RollupScan + 'a>> {
        let _ = (ids, buckets, start_ms, end_ms);
        None
    }

    /// Whether a name of this kind was ever written (OpenTSDB answers
    /// "No such name" for unknown ones).
    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError>;
}

/// The epoch-aligned buckets of [`Source::scan_buckets`] and the one
/// aggregate the caller reads from them besides the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub step_ms: i64,
    pub field: BucketField,
}

/// A field of [`RollupAgg`] computed per bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketField {
    /// Only `count`.
    Count,
    Sum,
    Min,
    Max,
    /// `first.value`.
    First,
    /// `last.value`.
    Last,
}

/// A tag a query's series must carry and a test on its value, with what
/// the test implies about the values it can accept.
pub struct TagSelect<'a> {
    pub key: &'a str,
    /// When `Some`, no value outside these can pass.
    pub exact: Option<&'a [String]>,
    /// Every value that can pass starts with this (often empty).
    pub prefix: &'a str,
    pub matches: &'a dyn Fn(&str) -> bool,
}

/// An open [`Source::scan_points`].
/// Opens one of several scans of the same series (see
/// [`Source::sibling_scans`]), from any thread.
pub type ScanOpener<'a> = Box<dyn Fn() -> Box<dyn PointScan + 'a> + Sync + 'a>;

/// What [`PointScan::scan_doubles`] hands each slice to: its timestamps
/// and its values.
pub type VisitDoubles<'a> = dyn FnMut(&[i64], &[f64]) -> ControlFlow<()> + 'a;

pub trait PointScan {
    /// Calls `visit` with the points of series `id`, one of the ids the
    /// scan was opened for, in time order, in any number of non-empty
    /// slices, until `visit` breaks (a query past its deadline); returns
    /// how many points it passed. Each series may be scanned once, in any
    /// order.
    fn scan(
        &mut self,
        id: u64,
        visit: &mut dyn FnMut(&[DataPoint]) -> ControlFlow<()>,
    ) -> Result<usize, SourceError>;

    /// [`scan`](Self::scan) with each slice as timestamps and values
    /// apart, every value a double ([`Value::as_f64`]): all downsampling
    /// reads. The default converts `scan`'s slices; the embedded store
    /// decodes its chunks so, which spares a copy and a branch a point.
    ///
    /// [`Value::as_f64`]: crate::model::Value::as_f64
    fn scan_doubles(
        &mut self,
        id: u64,
        visit: &mut VisitDoubles<'_>,
    ) -> Result<usize, SourceError> {
        let mut doubles = Doubles::default();
        self.scan(id, &mut |points| {
            doubles.clear();
            doubles.extend_points(points);
            visit(&doubles.ts, &doubles.vals)
        })
    }
}

/// An open [`Source::scan_rollups`].
pub trait RollupScan {
    /// What [`Source::rollups`] answers for series `id`, one of the ids
    /// the scan was opened for, each asked for once, in any order.
    fn rollups(&mut self, id: u64) -> Result<Option<Vec<RollupAgg>>, SourceError>;

    /// What an answer counts as read against the query's point limit and
    /// in its statistics: one per rollup (the default); a store's buckets
    /// count the points they hold, so that a query is refused, and
    /// reports, the same whether buckets or points were read.
    fn points_read(&self, aggs: &[RollupAgg]) -> usize {
        aggs.len()
    }
}

/// The default rollup scan: one `rollups` call per series.
struct ByRollups<'a, S: ?Sized> {
    source: &'a S,
    resolution: RollupResolution,
    start_ms: i64,
    end_ms: i64,
}

impl<S: Source + ?Sized> RollupScan for ByRollups<'_, S> {
    fn rollups(&mut self, id: u64) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.source
            .rollups(id, self.resolution, self.start_ms, self.end_ms)
    }
}

/// The default scan: one `points` call per series.
struct ByPoints<'a, S: ?Sized> {
    source: &'a S,
    start_ms: i64,
    end_ms: i64,
}

impl<S: Source + ?Sized> PointScan for ByPoints<'_, S> {
    fn scan(
        &mut self,
        id: u64,
        visit: &mut dyn FnMut(&[DataPoint]) -> ControlFlow<()>,
    ) -> Result<usize, SourceError> {
        let points = self.source.points(id, self.start_ms, self.end_ms)?;
        if !points.is_empty() {
            // One slice: there is nothing left to stop.
            let _ = visit(&points);
        }
        Ok(points.len())
    }
}
