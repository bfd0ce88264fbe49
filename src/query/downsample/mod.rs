//! Downsampling: the `<interval>[c]-<function>[-<fill>]` spec, the bucket
//! grid it defines, and folding a series' points (or its rollups) into one
//! value per bucket, with missing buckets filled per the fill policy.
//!
//! Rules, as OpenTSDB 2.4's `Downsampler`/`FillingDownsampler` apply them:
//!
//! - buckets are start-inclusive, end-exclusive, and reported at their
//!   start; fixed intervals align to the epoch, calendar ones (`1dc`, or any
//!   interval with `useCalendar`) to the wall clock in the query timezone;
//! - `all` / `0all-` folds `[start, end)` of the query into one value
//!   reported at `start`;
//! - the engine reads whole buckets (and whole hours around them), so the
//!   first and last buckets are complete even when `start`/`end` cut them;
//!   the output later drops buckets starting before `start` or after `end`;
//! - with a fill policy every bucket from the start of the read range to
//!   the end of the bucket holding `end` exists, missing ones as NaN
//!   (`nan`, `null`) or 0 (`zero`); without one, missing buckets are absent
//!   and the cross-series step interpolates over them.
//!
//! rtsd computes one calendar grid per query, anchored at the start of the
//! read range. OpenTSDB anchors it at each series' first point; the two
//! agree for every interval that divides its parent unit (hours of a day,
//! days of a month, ...), which are the ones people use.
//!
//! Parts: `spec` parses the spec, `grid` lays out the buckets, and
//! `downsampler` folds a series into them and fills the empty ones.

mod downsampler;
mod grid;
mod spec;

pub(crate) use downsampler::{downsample_rollups, fill, Downsampler};
pub(crate) use grid::{read_range, Grid, Slots};
pub use spec::{DownsampleSpec, FillPolicy, Interval};
