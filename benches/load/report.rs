//! The markdown report: the side-by-side table, then per system the thread
//! CPU breakdown, the data dir breakdown and anything the server replied.

use std::fmt::{self, Write as _};

use anyhow::Result;

use crate::measure::{Measurement, Writes};
use crate::procfs::machine;
use crate::workload::{Workload, INTERVAL_SECS};

pub const MIB: f64 = 1024.0 * 1024.0;

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The whole report: header, side-by-side table, notes, details per system.
pub fn render(
    w: &Workload,
    writes: Writes,
    results: &[(String, Result<Measurement>)],
    notes: &[String],
) -> Result<String, fmt::Error> {
    let mut out = String::new();
    let span_min = (w.last_ts - w.first_ts + INTERVAL_SECS) as f64 / 60.0;
    writeln!(out, "## Load benchmark\n")?;
    writeln!(out, "Machine: {}.  ", machine())?;
    writeln!(
        out,
        "Stream: {} telnet `put` lines ({:.0} MiB), {} series, {} s interval over {span_min:.0} min ending now, {} connections, {}.\n",
        group(w.points),
        w.bytes() as f64 / MIB,
        group(w.series as u64),
        INTERVAL_SECS,
        w.streams.len(),
        match writes {
            Writes::Bulk => "large buffered writes",
            Writes::Lines => "one write per line (TCP_NODELAY)",
        }
    )?;
    write!(out, "| |")?;
    for (name, _) in results {
        write!(out, " {name} |")?;
    }
    write!(out, "\n|---|")?;
    for _ in results {
        write!(out, "---:|")?;
    }
    out.push('\n');
    type Cell = fn(&Measurement, u64) -> String;
    let rows: [(&str, Cell); 16] = [
        ("points/s (first byte → all queryable)", |m, n| {
            group(m.points_per_sec(n) as u64)
        }),
        // Before the count query: on ClickHouse that query alone reads
        // every point back and takes seconds.
        ("points/s (first byte → all stored)", |m, n| {
            group((n as f64 / m.stored.as_secs_f64()) as u64)
        }),
        ("points dropped or rejected", |m, _| group(m.lost)),
        ("last byte sent (s)", |m, _| {
            format!("{:.2}", m.sent.as_secs_f64())
        }),
        ("all stored (s)", |m, _| {
            format!("{:.2}", m.stored.as_secs_f64())
        }),
        ("all queryable (s)", |m, _| {
            format!("{:.2}", m.queryable.as_secs_f64())
        }),
        ("server CPU (s)", |m, _| format!("{:.2}", m.server_cpu_secs)),
        ("points per CPU-second", |m, n| {
            group((n as f64 / m.server_cpu_secs.max(0.01)) as u64)
        }),
        ("server CPU up to all stored (s)", |m, _| {
            format!("{:.2}", m.server_cpu_stored_secs)
        }),
        ("points per CPU-second up to all stored", |m, n| {
            group((n as f64 / m.server_cpu_stored_secs.max(0.01)) as u64)
        }),
        ("peak RSS (MiB)", |m, _| {
            format!("{:.0}", m.peak_rss_bytes as f64 / MIB)
        }),
        ("peak RSS by process (MiB)", |m, _| {
            match m.peak_rss_by_process.len() {
                1 => "—".to_string(),
                _ => m
                    .peak_rss_by_process
                    .iter()
                    .map(|(label, bytes)| format!("{label} {:.0}", *bytes as f64 / MIB))
                    .collect::<Vec<_>>()
                    .join(" + "),
            }
        }),
        ("data dir after shutdown (MiB)", |m, _| {
            format!("{:.1}", m.disk.apparent as f64 / MIB)
        }),
        ("bytes per point, whole data dir", |m, n| {
            format!("{:.2}", m.disk.apparent as f64 / n as f64)
        }),
        ("bytes per point, without caches and logs", |m, n| {
            format!("{:.2}", m.disk.data as f64 / n as f64)
        }),
        ("shutdown after SIGTERM (s)", |m, _| {
            format!("{:.2}", m.shutdown.as_secs_f64())
        }),
    ];
    for (label, cell) in rows {
        write!(out, "| {label} |")?;
        for (_, result) in results {
            let text = match result {
                Ok(m) => cell(m, w.points),
                Err(_) => "failed".to_string(),
            };
            write!(out, " {text} |")?;
        }
        out.push('\n');
    }
    out.push('\n');
    for note in notes {
        writeln!(out, "{note}\n")?;
    }
    for (name, result) in results {
        writeln!(out, "### {name}\n")?;
        match result {
            Err(e) => {
                writeln!(out, "Failed:\n\n```\n{e:#}\n```\n")?;
            }
            Ok(m) => render_details(&mut out, m, w.points)?,
        }
    }
    Ok(out)
}

fn render_details(out: &mut String, m: &Measurement, points: u64) -> fmt::Result {
    let wall = m.queryable.as_secs_f64();
    let threads: Vec<String> = m
        .threads
        .iter()
        .take(8)
        .map(|(name, secs)| format!("`{name}` {secs:.2} s ({:.0}%)", 100.0 * secs / wall))
        .collect();
    writeln!(
        out,
        "- CPU by thread name (share of one core over the run): {}",
        threads.join(", ")
    )?;
    writeln!(
        out,
        "- loader CPU (sending threads, same machine): {:.2} s over {} connections; \
         load average at the start: {}",
        m.loader_cpu_secs, m.connections, m.load_average
    )?;
    let parts: Vec<String> = m
        .disk
        .parts
        .iter()
        .take(6)
        .map(|(name, bytes)| format!("`{name}` {:.1} MiB", *bytes as f64 / MIB))
        .collect();
    writeln!(
        out,
        "- data dir: {:.1} MiB apparent, {:.1} MiB allocated; {}",
        m.disk.apparent as f64 / MIB,
        m.disk.allocated as f64 / MIB,
        parts.join(", ")
    )?;
    writeln!(
        out,
        "- the count query that found every point took {:.2} s (within *all queryable*)",
        m.count_query.as_secs_f64()
    )?;
    if m.disk_by_process.len() > 1 {
        let dirs: Vec<String> = m
            .disk_by_process
            .iter()
            .map(|(label, d)| format!("{label} {:.1} MiB", d.apparent as f64 / MIB))
            .collect();
        writeln!(out, "- data dirs: {}", dirs.join(", "))?;
    }
    if let Some(ch) = &m.clickhouse {
        writeln!(
            out,
            "- ClickHouse at all-queryable: active parts {:.1} MiB ({}), parts {}; \
             stopped in {:.2} s after SIGTERM{}",
            ch.active_bytes as f64 / MIB,
            if ch.active_bytes == 0 {
                "none".to_string()
            } else {
                format!(
                    "{:.2} bytes per point",
                    ch.active_bytes as f64 / points as f64
                )
            },
            ch.parts,
            ch.stop.0.as_secs_f64(),
            if ch.stop.1 { ", then killed" } else { "" }
        )?;
    }
    if m.replies.0 > 0 {
        writeln!(
            out,
            "- the server replied {} bytes on ingest connections, first line: `{}`",
            m.replies.0, m.replies.1
        )?;
    }
    out.push('\n');
    Ok(())
}
