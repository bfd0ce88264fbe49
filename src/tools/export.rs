//! `rtsd export`: writes the points of a data dir as `tsdb import` lines or
//! CSV, to stdout or a file.
//!
//! The store is opened the normal (read-write) way, so the export refuses a
//! data dir a daemon holds and sees every committed point, the log
//! included; it writes nothing but what opening a store always does
//! (replaying the log into memory changes no data).
//!
//! Formats, one point per line, series in key order, points in time order:
//! * `put` (default): `metric timestamp value tag=value ...`, the import
//!   format (`rtsd import` and `tsdb import` read it; prefix `put ` for
//!   telnet). Timestamps are seconds when whole, else milliseconds.
//! * `csv`: header `metric,timestamp_ms,value,tags`, tags as
//!   `k=v;k2=v2` in key order. A field holding `,`, `"`, CR or LF is
//!   quoted RFC 4180 style (`"` doubled inside quotes).
//!
//! Integers are written as integers, floats in their shortest form that
//! reads back to the same value, always with a `.` or an exponent.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::model::{now_ms, DataPoint, Value};
use crate::model::{NameKind, SeriesMeta};
use crate::protocol::Put;
use crate::query::source::Source;
use crate::query::time::parse_time;

use super::{open_store, progress, ToolError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `metric timestamp value tags`, as `tsdb import` reads.
    Put,
    /// `metric,timestamp_ms,value,tags` with a header line.
    Csv,
}

/// Flags of `rtsd export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Directory holding the RocksDB store (no daemon may be running on it).
    #[arg(long, value_name = "DIR", default_value = "./rtsd-data")]
    pub data_dir: PathBuf,
    /// First time exported, in any OpenTSDB format (`1h-ago`, epoch, `2024/01/02-03:04:05`) [default: the epoch].
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Last time exported, inclusive [default: now].
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Metric to export; repeat for several [default: every metric].
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Only series carrying this tag (`k=v`, or `k=*` for any value); repeatable, all must match.
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Put)]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub series: u64,
    pub points: u64,
}

/// Runs the export; returns what was written.
pub fn run(args: &ExportArgs) -> Result<ExportSummary, ToolError> {
    let now = now_ms();
    let time = |flag: &str, text: &Option<String>, default: i64| match text {
        None => Ok(default),
        Some(t) => {
            parse_time(t, now, None).map_err(|e| ToolError::Usage(format!("--{flag} {t:?}: {e}")))
        }
    };
    let start = time("start", &args.start, 0)?;
    let end = time("end", &args.end, now)?;
    let filters = args
        .tags
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(ToolError::Usage(format!(
                "--tag {t:?}: expected k=v or k=*"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !args.data_dir.is_dir() {
        return Err(ToolError::NoDataDir(args.data_dir.clone()));
    }
    let (_writer, reader) = open_store(&args.data_dir)?;
    let store_err = |e: crate::query::source::SourceError| ToolError::Read(e.to_string());
    let metrics = if args.metrics.is_empty() {
        reader
            .suggest(NameKind::Metric, "", usize::MAX)
            .map_err(|e| ToolError::Read(e.to_string()))?
    } else {
        args.metrics.clone()
    };
    let mut series = Vec::new();
    for metric in &metrics {
        let all = reader.series_of_metric(metric).map_err(store_err)?;
        series.extend(
            all.unwrap_or_default()
                .into_iter()
                .filter(|s| matches(s, &filters)),
        );
    }
    series.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));

    let (path, sink): (String, Box<dyn Write>) = match &args.output {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| ToolError::io(p.display(), e))?;
            (p.display().to_string(), Box::new(f))
        }
        None => ("stdout".to_owned(), Box::new(std::io::stdout().lock())),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let io = |e| ToolError::io(&path, e);
    if args.format == Format::Csv {
        out.write_all(b"metric,timestamp_ms,value,tags\n")
            .map_err(io)?;
    }
    let bar = progress(
        Some(series.len() as u64),
        "[{bar:40}] {pos}/{len} series eta {eta}",
    );
    let mut summary = ExportSummary::default();
    let mut line = String::new();
    for s in &series {
        let points = reader.points(s.id, start, end).map_err(store_err)?;
        for p in &points {
            line.clear();
            match args.format {
                Format::Put => put_line(&mut line, s, p),
                Format::Csv => csv_line(&mut line, s, p),
            }
            out.write_all(line.as_bytes()).map_err(io)?;
        }
        summary.series += 1;
        summary.points += points.len() as u64;
        bar.inc(1);
    }
    out.flush().map_err(io)?;
    bar.finish_and_clear();
    Ok(summary)
}

/// Whether series `s` carries every `(key, value)` of `filters` (`*`: any
/// value).
fn matches(s: &SeriesMeta, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| {
        s.key
            .tags()
            .any(|(tk, tv)| tk == k && (v == "*" || tv == v))
    })
}

/// `metric ts value tags\n`: the canonical telnet line without `put `.
fn put_line(out: &mut String, s: &SeriesMeta, p: &DataPoint) {
    let put = Put {
        metric: s.key.metric(),
        timestamp_ms: p.timestamp_ms,
        value: p.value,
        tags: s.key.tags().collect(),
    };
    let full = put.to_line();
    out.push_str(full.strip_prefix("put ").unwrap_or(&full));
    out.push('\n');
}

fn csv_line(out: &mut String, s: &SeriesMeta, p: &DataPoint) {
    csv_field(out, s.key.metric());
    // Writing to a String cannot fail.
    let _ = write!(out, ",{},", p.timestamp_ms);
    let _ = match p.value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Float(v) => write!(out, "{v:?}"),
    };
    out.push(',');
    let mut tags = String::new();
    for (i, (k, v)) in s.key.tags().enumerate() {
        if i > 0 {
            tags.push(';');
        }
        let _ = write!(tags, "{k}={v}");
    }
    csv_field(out, &tags);
    out.push('\n');
}

/// `field`, quoted when it holds a separator, quote or line break.
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeriesKey;

    fn meta(metric: &str, tags: &[(&str, &str)]) -> SeriesMeta {
        SeriesMeta {
            id: 1,
            key: SeriesKey::new(metric, tags.iter().copied()),
        }
    }

    fn point(ts: i64, value: Value) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value,
        }
    }

    #[test]
    fn put_lines_are_import_format() {
        let s = meta("sys.cpu", &[("host", "a"), ("dc", "x")]);
        let mut out = String::new();
        put_line(&mut out, &s, &point(1_700_000_000_000, Value::Int(-3)));
        put_line(&mut out, &s, &point(1_700_000_000_250, Value::Float(0.1)));
        put_line(&mut out, &s, &point(1_700_000_001_000, Value::Float(2.0)));
        assert_eq!(
            out,
            "sys.cpu 1700000000 -3 dc=x host=a\n\
             sys.cpu 1700000000250 0.1 dc=x host=a\n\
             sys.cpu 1700000001 2.0 dc=x host=a\n"
        );
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = String::new();
        csv_line(
            &mut out,
            &meta("m", &[("a", "1"), ("b", "2")]),
            &point(1500, Value::Float(1e300)),
        );
        csv_line(
            &mut out,
            &meta("m,x", &[("q", "say\"hi")]),
            &point(2000, Value::Int(7)),
        );
        csv_line(&mut out, &meta("m", &[]), &point(3000, Value::Int(0)));
        assert_eq!(
            out,
            "m,1500,1e300,a=1;b=2\n\"m,x\",2000,7,\"q=say\"\"hi\"\n\
             m,3000,0,\n"
        );
    }

    #[test]
    fn tag_filters_match_exact_values_or_any() {
        let s = meta("m", &[("host", "a"), ("dc", "x")]);
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(matches(&s, &[]));
        assert!(matches(&s, &f(&[("host", "a"), ("dc", "*")])));
        assert!(!matches(&s, &f(&[("host", "b")])));
        assert!(!matches(&s, &f(&[("rack", "*")])));
    }
}
