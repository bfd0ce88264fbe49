//! The aggregation functions of OpenTSDB 2.4 (`Aggregators.java`), used
//! both across series (with an interpolation kind for series that have no
//! point at a timestamp) and inside downsampling buckets.
//!
//! Every function folds `f64`s the way OpenTSDB's double path does: NaN
//! (a `nan`/`null`-filled bucket) is skipped, and a fold over nothing but
//! NaN is NaN. The engine decides whether a result is reported as an
//! integer (see `sweep.rs`); OpenTSDB's truncating integer path is not
//! reproduced, on purpose (the "differs on purpose" table).
//!
//! Two OpenTSDB quirks are not reproduced either: the `ep*r3`/`ep*r7`
//! estimators use their estimation type for doubles too (OpenTSDB applies
//! it to integers only, so for doubles they equal `p*`), and `mimmax` never
//! lets a missing series count as `Double.MIN_VALUE` (a tiny *positive*
//! number in Java, which beats every negative value).

/// How a series with no point at an output timestamp takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Linear interpolation between its points around the timestamp.
    Lerp,
    /// Zero if missing.
    Zim,
    /// Left out of a minimum (OpenTSDB feeds the type's maximum).
    Max,
    /// Left out of a maximum (OpenTSDB feeds the type's minimum).
    Min,
    /// Its previous value.
    Prev,
}

/// The quantile definitions of Apache Commons Math's `Percentile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimation {
    /// Commons Math's default: position `p (n + 1)`.
    Legacy,
    /// R-3, the nearest even order statistic.
    R3,
    /// R-7, linear between order statistics (Excel, NumPy's default).
    R7,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Min,
    Max,
    Avg,
    Dev,
    Count,
    First,
    Last,
    Median,
    Mult,
    Diff,
    SquareSum,
    None,
    Percentile(f64, Estimation),
}

/// A named aggregation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregator {
    name: &'static str,
    kind: Kind,
    interpolation: Interpolation,
}

const fn agg(name: &'static str, kind: Kind, interpolation: Interpolation) -> Aggregator {
    Aggregator {
        name,
        kind,
        interpolation,
    }
}

const fn pct(name: &'static str, p: f64, e: Estimation) -> Aggregator {
    agg(name, Kind::Percentile(p, e), Interpolation::Lerp)
}

use Estimation::{Legacy, R3, R7};
use Interpolation::{Lerp, Prev, Zim};

/// Every aggregator OpenTSDB 2.4 registers. `none` is called `raw`
/// internally by OpenTSDB; users write `none`.
const ALL: [Aggregator; 35] = [
    agg("sum", Kind::Sum, Lerp),
    agg("min", Kind::Min, Lerp),
    agg("max", Kind::Max, Lerp),
    agg("avg", Kind::Avg, Lerp),
    agg("dev", Kind::Dev, Lerp),
    agg("count", Kind::Count, Zim),
    agg("zimsum", Kind::Sum, Zim),
    agg("mimmin", Kind::Min, Interpolation::Max),
    agg("mimmax", Kind::Max, Interpolation::Min),
    agg("first", Kind::First, Zim),
    agg("last", Kind::Last, Zim),
    agg("median", Kind::Median, Lerp),
    agg("mult", Kind::Mult, Lerp),
    agg("diff", Kind::Diff, Lerp),
    agg("squareSum", Kind::SquareSum, Zim),
    agg("pfsum", Kind::Sum, Prev),
    agg("none", Kind::None, Zim),
    pct("p50", 50.0, Legacy),
    pct("p75", 75.0, Legacy),
    pct("p90", 90.0, Legacy),
    pct("p95", 95.0, Legacy),
    pct("p99", 99.0, Legacy),
    pct("p999", 99.9, Legacy),
    pct("ep50r3", 50.0, R3),
    pct("ep75r3", 75.0, R3),
    pct("ep90r3", 90.0, R3),
    pct("ep95r3", 95.0, R3),
    pct("ep99r3", 99.0, R3),
    pct("ep999r3", 99.9, R3),
    pct("ep50r7", 50.0, R7),
    pct("ep75r7", 75.0, R7),
    pct("ep90r7", 90.0, R7),
    pct("ep95r7", 95.0, R7),
    pct("ep99r7", 99.0, R7),
    pct("ep999r7", 99.9, R7),
];

const NAMES: [&str; 35] = {
    let mut names = [""; 35];
    let mut i = 0;
    while i < ALL.len() {
        names[i] = ALL[i].name;
        i += 1;
    }
    names
};

/// The names `/api/aggregators` lists.
pub fn aggregator_names() -> &'static [&'static str] {
    &NAMES
}

impl Aggregator {
    /// Looks a name up, case-sensitively as OpenTSDB does (`SUM` is unknown).
    pub fn from_name(name: &str) -> Option<Aggregator> {
        ALL.iter().find(|a| a.name == name).copied()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn interpolation(&self) -> Interpolation {
        self.interpolation
    }

    /// `none`: no grouping, every series on its own.
    pub fn is_none(&self) -> bool {
        self.kind == Kind::None
    }

    /// Whether a downsampling bucket can be computed from rollup
    /// aggregates (count, sum, min, max, sum of squares, first, last).
    pub(crate) fn rollup_function(&self) -> Option<RollupFunction> {
        Some(match (self.kind, self.name) {
            (Kind::Sum, "sum" | "zimsum") => RollupFunction::Sum,
            (Kind::Count, _) => RollupFunction::Count,
            (Kind::Min, _) => RollupFunction::Min,
            (Kind::Max, _) => RollupFunction::Max,
            (Kind::Avg, _) => RollupFunction::Avg,
            (Kind::Dev, _) => RollupFunction::Dev,
            (Kind::First, _) => RollupFunction::First,
            (Kind::Last, _) => RollupFunction::Last,
            _ => return None,
        })
    }

    /// Folds `values` (in series or time order). May reorder `values`.
    pub fn run(&self, values: &mut [f64]) -> f64 {
        let numbers = || values.iter().copied().filter(|v| !v.is_nan());
        match self.kind {
            Kind::Sum => fold_or_nan(numbers(), |a, b| a + b),
            Kind::SquareSum => fold_or_nan(numbers().map(|v| v * v), |a, b| a + b),
            Kind::Min => fold_or_nan(numbers(), f64::min),
            Kind::Max => fold_or_nan(numbers(), f64::max),
            Kind::Avg => {
                let (sum, n) = numbers().fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
                if n == 0 {
                    f64::NAN
                } else {
                    sum / n as f64
                }
            }
            Kind::Dev => deviation(numbers()),
            Kind::Count => numbers().count() as f64,
            Kind::First | Kind::None => values.first().copied().unwrap_or(f64::NAN),
            Kind::Last => values.last().copied().unwrap_or(f64::NAN),
            Kind::Mult => values.iter().product(),
            Kind::Diff => diff(values),
            Kind::Median => {
                let n = sort_numbers(values);
                if n == 0 {
                    f64::NAN
                } else {
                    values[n / 2]
                }
            }
            Kind::Percentile(p, e) => {
                let n = sort_numbers(values);
                percentile(&values[..n], p, e)
            }
        }
    }
}

/// The running state of [`Aggregator::fold_push`]: a fold of values one at
/// a time that gives bit for bit what [`Aggregator::run`] gives on the same
/// values in the same order, without keeping them. `a`, `b` and `n` mean
/// what each kind needs (sum, mean and M2, first and last, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Fold {
    a: f64,
    b: f64,
    n: u64,
}

/// `fold_or_nan` over the numbers: the first one, then `op`.
#[inline(always)]
fn fold_number(f: &mut Fold, v: f64, op: impl Fn(f64, f64) -> f64) {
    if v.is_nan() {
        return;
    }
    f.a = if f.n == 0 { v } else { op(f.a, v) };
    f.n += 1;
}

/// A sum from 0.0 (so -0.0 alone averages to 0.0, as in `run`).
#[inline(always)]
fn push_avg(f: &mut Fold, v: f64) {
    if !v.is_nan() {
        f.a += v;
        f.n += 1;
    }
}

#[inline(always)]
fn number_result(f: &Fold) -> f64 {
    if f.n == 0 {
        f64::NAN
    } else {
        f.a
    }
}

#[inline(always)]
fn avg_result(f: &Fold) -> f64 {
    match f.n {
        0 => f64::NAN,
        // `x / 1.0` is `x`; this skips a division in one-value buckets.
        1 => f.a,
        n => f.a / n as f64,
    }
}

impl Aggregator {
    /// Whether [`fold_push`](Self::fold_push) can stand in for `run`: every
    /// function but the median and the percentiles, which need all values.
    pub(crate) fn foldable(&self) -> bool {
        !matches!(self.kind, Kind::Median | Kind::Percentile(..))
    }

    /// Adds `v` to `f`, as if pushed to the values `run` folds. Only for
    /// [`foldable`](Self::foldable) aggregators.
    #[inline]
    pub(crate) fn fold_push(&self, f: &mut Fold, v: f64) {
        match self.kind {
            Kind::Sum => fold_number(f, v, |a, b| a + b),
            Kind::SquareSum => fold_number(f, v * v, |a, b| a + b),
            Kind::Min => fold_number(f, v, f64::min),
            Kind::Max => fold_number(f, v, f64::max),
            Kind::Avg | Kind::Count => push_avg(f, v),
            // `deviation`: Welford with `n` counted in doubles.
            Kind::Dev => {
                if v.is_nan() {
                    return;
                }
                f.n += 1;
                if f.n == 1 {
                    f.a = v;
                    f.b = 0.0;
                } else {
                    let n = f.n as f64;
                    let next_mean = f.a + (v - f.a) / n;
                    f.b += (v - f.a) * (v - next_mean);
                    f.a = next_mean;
                }
            }
            Kind::First | Kind::None => {
                if f.n == 0 {
                    f.a = v;
                }
                f.n += 1;
            }
            Kind::Last => {
                f.a = v;
                f.n += 1;
            }
            // `product()`: a fold from 1.0, and `1.0 * v` is `v`.
            Kind::Mult => {
                f.a = if f.n == 0 { v } else { f.a * v };
                f.n += 1;
            }
            // `diff`: `a` the first number, `b` the last value; `n` is 0
            // before the first number, 1 while it is the last value, 2 after.
            Kind::Diff => {
                if f.n == 0 {
                    if !v.is_nan() {
                        f.a = v;
                        f.n = 1;
                    }
                } else {
                    f.n = 2;
                }
                f.b = v;
            }
            Kind::Median | Kind::Percentile(..) => {
                debug_assert!(false, "{} does not fold", self.name);
            }
        }
    }

    /// What `run` returns for the values pushed to `f`.
    #[inline]
    pub(crate) fn fold_result(&self, f: &Fold) -> f64 {
        match self.kind {
            Kind::Count => f.n as f64,
            Kind::Sum | Kind::SquareSum | Kind::Min | Kind::Max => number_result(f),
            Kind::Avg => avg_result(f),
            _ if f.n == 0 => match self.kind {
                Kind::Mult => 1.0,
                _ => f64::NAN,
            },
            Kind::Dev if f.n == 1 => 0.0,
            Kind::Dev => (f.b / (f.n as f64 - 1.0)).sqrt(),
            Kind::Diff if f.n == 1 => 0.0,
            Kind::Diff => f.b - f.a,
            _ => f.a,
        }
    }

    /// Runs `w` with this aggregator's fold as a type, so that hot loops
    /// over many values are compiled once per common function instead of
    /// matching on the function at every value.
    #[inline]
    pub(crate) fn with_fold<W: WithFold>(&self, w: W) -> W::Output {
        match self.kind {
            Kind::Sum => w.run(SumFold),
            Kind::Avg => w.run(AvgFold),
            Kind::Min => w.run(MinFold),
            Kind::Max => w.run(MaxFold),
            _ => w.run(*self),
        }
    }
}

/// One foldable function: [`Aggregator::fold_push`] and `fold_result`.
pub(crate) trait FoldOp: Copy {
    fn push(self, f: &mut Fold, v: f64);
    fn result(self, f: &Fold) -> f64;
}

/// A computation generic over a [`FoldOp`], for [`Aggregator::with_fold`].
pub(crate) trait WithFold {
    type Output;
    fn run<F: FoldOp>(self, op: F) -> Self::Output;
}

impl FoldOp for Aggregator {
    #[inline(always)]
    fn push(self, f: &mut Fold, v: f64) {
        self.fold_push(f, v);
    }
    #[inline(always)]
    fn result(self, f: &Fold) -> f64 {
        self.fold_result(f)
    }
}

#[derive(Clone, Copy)]
struct SumFold;
#[derive(Clone, Copy)]
struct AvgFold;
#[derive(Clone, Copy)]
struct MinFold;
#[derive(Clone, Copy)]
struct MaxFold;

impl FoldOp for SumFold {
    #[inline(always)]
    fn push(self, f: &mut Fold, v: f64) {
        fold_number(f, v, |a, b| a + b);
    }
    #[inline(always)]
    fn result(self, f: &Fold) -> f64 {
        number_result(f)
    }
}

impl FoldOp for AvgFold {
    #[inline(always)]
    fn push(self, f: &mut Fold, v: f64) {
        push_avg(f, v);
    }
    #[inline(always)]
    fn result(self, f: &Fold) -> f64 {
        avg_result(f)
    }
}

impl FoldOp for MinFold {
    #[inline(always)]
    fn push(self, f: &mut Fold, v: f64) {
        fold_number(f, v, f64::min);
    }
    #[inline(always)]
    fn result(self, f: &Fold) -> f64 {
        number_result(f)
    }
}

impl FoldOp for MaxFold {
    #[inline(always)]
    fn push(self, f: &mut Fold, v: f64) {
        fold_number(f, v, f64::max);
    }
    #[inline(always)]
    fn result(self, f: &Fold) -> f64 {
        number_result(f)
    }
}

/// What a bucket is computed from when it is read from rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RollupFunction {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    Dev,
    First,
    Last,
}

fn fold_or_nan(mut it: impl Iterator<Item = f64>, f: impl Fn(f64, f64) -> f64) -> f64 {
    match it.next() {
        Some(first) => it.fold(first, f),
        None => f64::NAN,
    }
}

/// Sample standard deviation by Welford's method, as OpenTSDB computes it:
/// zero for a single value.
fn deviation(mut it: impl Iterator<Item = f64>) -> f64 {
    let Some(first) = it.next() else {
        return f64::NAN;
    };
    let mut mean = first;
    let mut m2 = 0.0;
    let mut n = 1.0;
    for x in it {
        n += 1.0;
        let next_mean = mean + (x - mean) / n;
        m2 += (x - mean) * (x - next_mean);
        mean = next_mean;
    }
    if n == 1.0 {
        0.0
    } else {
        (m2 / (n - 1.0)).sqrt()
    }
}

/// The last value minus the first non-NaN one; zero for a single value.
fn diff(values: &[f64]) -> f64 {
    let Some(start) = values.iter().position(|v| !v.is_nan()) else {
        return f64::NAN;
    };
    if start + 1 == values.len() {
        return 0.0;
    }
    values[values.len() - 1] - values[start]
}

/// Moves the non-NaN values to the front, sorted; returns their count.
fn sort_numbers(values: &mut [f64]) -> usize {
    values.sort_unstable_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (false, false) => a.total_cmp(b),
        (a_nan, b_nan) => a_nan.cmp(&b_nan),
    });
    values.iter().take_while(|v| !v.is_nan()).count()
}

/// Commons Math's `Percentile.evaluate` over sorted values.
fn percentile(sorted: &[f64], p: f64, estimation: Estimation) -> f64 {
    let n = sorted.len();
    match n {
        0 => return f64::NAN,
        1 => return sorted[0],
        _ => {}
    }
    let len = n as f64;
    let q = p / 100.0;
    let pos = match estimation {
        Estimation::Legacy => q * (len + 1.0),
        Estimation::R3 if q <= 0.5 / len => 0.0,
        Estimation::R3 => (len * q).round_ties_even(),
        Estimation::R7 if q >= 1.0 => len,
        Estimation::R7 => 1.0 + (len - 1.0) * q,
    };
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= len {
        return sorted[n - 1];
    }
    let lower_pos = pos.floor();
    let dif = pos - lower_pos;
    // 1 <= lower_pos < n, so both indexes exist.
    let i = lower_pos as usize;
    let (lower, upper) = (sorted[i - 1], sorted[i]);
    lower + dif * (upper - lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, values: &[f64]) -> f64 {
        let mut v = values.to_vec();
        Aggregator::from_name(name).unwrap().run(&mut v)
    }

    #[test]
    fn names_and_interpolation() {
        assert_eq!(aggregator_names().len(), 35);
        assert!(aggregator_names().contains(&"squareSum"));
        assert!(Aggregator::from_name("SUM").is_none());
        assert!(Aggregator::from_name("squaresum").is_none());
        let interp = |n: &str| Aggregator::from_name(n).unwrap().interpolation();
        for n in [
            "sum", "min", "max", "avg", "dev", "median", "mult", "diff", "p99", "ep50r3",
        ] {
            assert_eq!(interp(n), Interpolation::Lerp, "{n}");
        }
        for n in ["zimsum", "count", "first", "last", "squareSum"] {
            assert_eq!(interp(n), Interpolation::Zim, "{n}");
        }
        assert_eq!(interp("mimmin"), Interpolation::Max);
        assert_eq!(interp("mimmax"), Interpolation::Min);
        assert_eq!(interp("pfsum"), Interpolation::Prev);
        assert!(Aggregator::from_name("none").unwrap().is_none());
    }

    #[test]
    fn folds() {
        let nan = f64::NAN;
        let v = [3.0, 1.0, 4.0, 1.0, 5.0];
        let cases: &[(&str, &[f64], f64)] = &[
            ("sum", &v, 14.0),
            ("zimsum", &v, 14.0),
            ("pfsum", &v, 14.0),
            ("min", &v, 1.0),
            ("mimmin", &v, 1.0),
            ("max", &v, 5.0),
            ("mimmax", &[-3.0, -1.0], -1.0),
            ("avg", &v, 2.8),
            ("count", &v, 5.0),
            ("first", &v, 3.0),
            ("last", &v, 5.0),
            ("median", &v, 3.0),
            // Even count: the upper median.
            ("median", &[1.0, 2.0, 3.0, 4.0], 3.0),
            ("mult", &v, 60.0),
            ("diff", &v, 2.0),
            ("diff", &[7.0], 0.0),
            ("squareSum", &[1.0, 2.0, 3.0], 14.0),
            (
                "dev",
                &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
                (32.0f64 / 7.0).sqrt(),
            ),
            ("dev", &[5.0], 0.0),
            ("none", &[7.5], 7.5),
            // NaN from fills is skipped...
            ("sum", &[nan, 2.0, nan, 3.0], 5.0),
            ("avg", &[nan, 2.0, 4.0], 3.0),
            ("count", &[nan, 2.0, 4.0], 2.0),
            ("min", &[nan, 2.0], 2.0),
            ("max", &[2.0, nan], 2.0),
            ("dev", &[nan, 1.0, 3.0], 2.0f64.sqrt()),
            ("median", &[nan, 1.0, 3.0, 2.0], 2.0),
            ("count", &[nan, nan], 0.0),
        ];
        for &(name, values, want) in cases {
            let got = run(name, values);
            assert!(
                (got - want).abs() < 1e-12,
                "{name}({values:?}) = {got}, want {want}"
            );
        }
        // ...and only NaN gives NaN.
        for name in [
            "sum",
            "min",
            "max",
            "avg",
            "dev",
            "median",
            "squareSum",
            "p99",
            "ep99r7",
        ] {
            assert!(run(name, &[nan, nan]).is_nan(), "{name}");
        }
    }

    /// `run`'s result and the fold's, bit for bit (NaN equal to NaN).
    fn same(x: f64, y: f64) -> bool {
        x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
    }

    /// The fold of `values` through `fold_push` and through `with_fold`
    /// (each aggregator's own fold), which must agree.
    fn fold(agg: Aggregator, values: &[f64]) -> f64 {
        struct Typed<'a>(&'a [f64]);
        impl WithFold for Typed<'_> {
            type Output = f64;
            fn run<F: FoldOp>(self, op: F) -> f64 {
                let mut f = Fold::default();
                for &v in self.0 {
                    op.push(&mut f, v);
                }
                op.result(&f)
            }
        }
        let mut f = Fold::default();
        for &v in values {
            agg.fold_push(&mut f, v);
        }
        let generic = agg.fold_result(&f);
        let typed = agg.with_fold(Typed(values));
        assert!(same(generic, typed), "{}: {generic} vs {typed}", agg.name());
        generic
    }

    #[test]
    fn folds_equal_run_on_edge_values() {
        let nan = f64::NAN;
        let inputs: &[&[f64]] = &[
            &[],
            &[nan],
            &[nan, nan],
            &[-0.0],
            &[0.0, -0.0],
            &[-0.0, 0.0],
            &[-0.0, -0.0],
            &[5.0],
            &[nan, 5.0],
            &[5.0, nan],
            &[nan, 5.0, nan],
            &[1.0, f64::INFINITY, f64::NEG_INFINITY],
            &[f64::MAX, f64::MAX, -f64::MAX],
            &[0.1, 0.2, 0.3, nan, 1e300, -1e300],
            &[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0],
        ];
        for name in aggregator_names() {
            let agg = Aggregator::from_name(name).unwrap();
            if !agg.foldable() {
                continue;
            }
            for values in inputs {
                let want = agg.run(&mut values.to_vec());
                let got = fold(agg, values);
                assert!(
                    same(got, want),
                    "{name}({values:?}): fold {got}, run {want}"
                );
            }
        }
        assert!(!Aggregator::from_name("median").unwrap().foldable());
        assert!(!Aggregator::from_name("ep99r7").unwrap().foldable());
    }

    proptest::proptest! {
        #[test]
        fn folds_equal_run(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => -1e6f64..1e6,
                    1 => proptest::sample::select(vec![
                        f64::NAN, 0.0, -0.0, 1.0, f64::INFINITY, f64::NEG_INFINITY, 1e308,
                    ]),
                ],
                0..40,
            )
        ) {
            for name in aggregator_names() {
                let agg = Aggregator::from_name(name).unwrap();
                if !agg.foldable() {
                    continue;
                }
                let want = agg.run(&mut values.clone());
                let got = fold(agg, &values);
                proptest::prop_assert!(same(got, want), "{}({:?}): fold {}, run {}", name, values, got, want);
            }
        }
    }

    #[test]
    fn percentiles_match_commons_math() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let cases: &[(&str, f64)] = &[
            // Legacy: pos = p (n + 1).
            ("p50", 5.5),
            ("p75", 8.25),
            ("p90", 9.9),
            ("p95", 10.0),
            ("p99", 10.0),
            ("p999", 10.0),
            // rint(n p), round half even.
            ("ep50r3", 5.0),
            ("ep75r3", 8.0),
            ("ep90r3", 9.0),
            ("ep95r3", 10.0),
            ("ep99r3", 10.0),
            // 1 + (n - 1) p.
            ("ep50r7", 5.5),
            ("ep75r7", 7.75),
            ("ep90r7", 9.1),
            ("ep95r7", 9.55),
            ("ep99r7", 9.91),
            ("ep999r7", 9.991),
        ];
        for &(name, want) in cases {
            let got = run(name, &v);
            assert!((got - want).abs() < 1e-9, "{name} = {got}, want {want}");
        }
        assert_eq!(run("p99", &[4.0]), 4.0);
    }

    #[test]
    fn rollup_functions() {
        let f = |n: &str| Aggregator::from_name(n).unwrap().rollup_function();
        assert_eq!(f("sum"), Some(RollupFunction::Sum));
        assert_eq!(f("zimsum"), Some(RollupFunction::Sum));
        assert_eq!(f("mimmin"), Some(RollupFunction::Min));
        assert_eq!(f("mimmax"), Some(RollupFunction::Max));
        assert_eq!(f("dev"), Some(RollupFunction::Dev));
        assert_eq!(f("pfsum"), None);
        assert_eq!(f("median"), None);
        assert_eq!(f("p99"), None);
    }
}
