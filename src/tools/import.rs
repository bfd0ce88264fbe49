//! `rtsd import FILE...`: loads OpenTSDB `tsdb import` files into a data
//! dir at full speed.
//!
//! A line is `metric timestamp value tag=value ...`, as `tsdb import`
//! reads it; a leading `put` (telnet form) is accepted too. Each line goes
//! through the telnet parser ([`crate::protocol::parse_line`]), so import
//! accepts exactly what ingest accepts. Files may be gzipped (found by the
//! magic bytes, not the name); `-` is stdin. Points are appended to the
//! store directly in batches of [`BATCH_POINTS`], windows that are due seal
//! as the import goes so the head stays small, and everything is sealed and
//! flushed at the end. Bad lines are reported on stderr with `file:line`
//! and counted; they do not stop the import.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use indicatif::ProgressBar;

use crate::model::{now_ms, DataPoint, Sample};
use crate::protocol::{parse_line, Command, ParseOptions};
use crate::storage::StoreWriter;

use super::{open_store, progress, ToolError};

/// Points appended per store commit: large enough to amortise the commit.
pub const BATCH_POINTS: usize = 64 * 1024;

/// Flags of `rtsd import`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// Directory holding the RocksDB store; created if missing.
    #[arg(long, value_name = "DIR", default_value = "./rtsd-data")]
    pub data_dir: PathBuf,
    /// Most tags a point may carry, as `serve --max-tags`.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_tags: usize,
    /// Files to read (plain or gzipped); `-` reads stdin.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<String>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ImportSummary {
    pub points: u64,
    pub bad_lines: u64,
    pub elapsed: Duration,
}

impl ImportSummary {
    pub fn points_per_sec(&self) -> f64 {
        self.points as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} points, {} bad lines, in {:.2} s ({:.0} points/s)",
            self.points,
            self.bad_lines,
            self.elapsed.as_secs_f64(),
            self.points_per_sec()
        )
    }
}

/// Runs the import; bad lines and the summary go to `report`.
pub fn run(args: &ImportArgs, report: &mut impl Write) -> Result<ImportSummary, ToolError> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| ToolError::io(args.data_dir.display(), e))?;
    let (writer, _reader) = open_store(&args.data_dir)?;
    let opts = ParseOptions {
        max_tags: args.max_tags,
        ..ParseOptions::default()
    };
    let mut import = Importer {
        store: writer,
        dir: args.data_dir.clone(),
        opts,
        batch: Vec::with_capacity(BATCH_POINTS),
        line: Vec::new(),
        summary: ImportSummary::default(),
    };
    for file in &args.files {
        import.file(file, report)?;
    }
    import.commit()?;
    let dir = import.dir.clone();
    let store_err = |e| ToolError::store(&dir, e);
    import.store.seal_all(now_ms()).map_err(store_err)?;
    import.store.flush().map_err(store_err)?;
    let summary = ImportSummary {
        elapsed: started.elapsed(),
        ..import.summary
    };
    writeln!(report, "{summary}").map_err(|e| ToolError::io("stderr", e))?;
    Ok(summary)
}

struct Importer {
    store: StoreWriter,
    dir: PathBuf,
    opts: ParseOptions,
    batch: Vec<Sample>,
    /// The current line with `put ` in front, reused across lines.
    line: Vec<u8>,
    summary: ImportSummary,
}

/// Counts bytes read from the underlying (possibly compressed) file into
/// the progress bar, so progress is bytes of the file's real size.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// `input` as a buffered reader of its decompressed bytes.
fn decompressed(input: Box<dyn Read>) -> std::io::Result<Box<dyn BufRead>> {
    let mut buffered = BufReader::with_capacity(1 << 20, input);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    })
}

impl Importer {
    fn file(&mut self, name: &str, report: &mut impl Write) -> Result<(), ToolError> {
        let (raw, size): (Box<dyn Read>, Option<u64>) = if name == "-" {
            (Box::new(std::io::stdin().lock()), None)
        } else {
            let f = std::fs::File::open(Path::new(name)).map_err(|e| ToolError::io(name, e))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        };
        let bar = progress(
            size,
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
        bar.set_message(name.to_owned());
        let counted = Counted {
            inner: raw,
            bar: bar.clone(),
        };
        let mut input = decompressed(Box::new(counted)).map_err(|e| ToolError::io(name, e))?;
        let mut text = Vec::new();
        let mut number = 0u64;
        loop {
            text.clear();
            if input
                .read_until(b'\n', &mut text)
                .map_err(|e| ToolError::io(format!("{name}:{}", number + 1), e))?
                == 0
            {
                break;
            }
            number += 1;
            if let Err(why) = self.line(&text) {
                self.summary.bad_lines += 1;
                bar.suspend(|| writeln!(report, "{name}:{number}: {why}"))
                    .map_err(|e| ToolError::io("stderr", e))?;
            }
            if self.batch.len() >= BATCH_POINTS {
                self.commit()?;
            }
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Parses one line (with its `\n`) into the batch; blank lines are
    /// skipped. The error is the parser's reply text.
    fn line(&mut self, text: &[u8]) -> Result<(), String> {
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.line.clear();
        if !text.starts_with(b"put ") {
            self.line.extend_from_slice(b"put ");
        }
        self.line.extend_from_slice(text);
        match parse_line(&self.line, &self.opts) {
            Ok(Command::Put(put)) => {
                self.batch.push(Sample {
                    series: put.series_key(),
                    point: DataPoint {
                        timestamp_ms: put.timestamp_ms,
                        value: put.value,
                    },
                });
                Ok(())
            }
            Ok(_) => Err("not a data point".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Appends the batch and seals what is due, so memory stays bounded
    /// however much history the files hold.
    fn commit(&mut self) -> Result<(), ToolError> {
        let dir = &self.dir;
        let stats = self
            .store
            .append(&self.batch)
            .map_err(|e| ToolError::store(dir, e))?;
        self.summary.points += stats.points as u64;
        self.batch.clear();
        self.store
            .seal_due(now_ms())
            .map_err(|e| ToolError::store(dir, e))?;
        Ok(())
    }
}
