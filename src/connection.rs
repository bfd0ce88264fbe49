//! One telnet-style connection: framing, dispatch, bounded replies.
//!
//! Framing is not parsing: this module finds whole lines (`\n`-terminated,
//! the `\r` of CRLF is the parser's business), enforces `--max-line-bytes`,
//! and hands each line to the pure parser in `protocol`. Parsed points are
//! gathered into a batch per read and pushed onto the ingest queue.
//!
//! Replies never block ingest. collectd, telegraf and potsdb never read
//! their socket, so error replies go into a buffer of `reply_buffer_bytes`;
//! what does not fit is dropped and counted (`socket_writes_blocked`).
//! Replies a client asked for (`version`, `help`, `stats`) are always queued,
//! because tcollector drops servers that do not answer `version`; a client
//! that asks without ever reading is paused (no more reads) once the buffer
//! reaches four times its size, so memory stays bounded.
//!
//! An over-long line gets one error reply and is skipped up to its newline;
//! the connection goes on (OpenTSDB closes it silently). On shutdown the
//! connection stops at a line boundary: every complete line already read is
//! processed and queued, then the socket closes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;
use memchr::memchr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::model::Sample;
use crate::protocol::{self, Command, ParseOptions};
use crate::queue::{Batch, PushError, QueueSender};
use crate::stats::Stats;
use crate::storage::StoreReader;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What every telnet connection shares.
pub struct TelnetContext {
    pub queue: QueueSender,
    pub stats: Arc<Stats>,
    pub store: StoreReader,
    pub parse: ParseOptions,
    pub max_line_bytes: usize,
    pub reply_buffer_bytes: usize,
    pub shutdown: CancellationToken,
}

/// How a connection ended, for the connection span's log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Eof,
    Exit,
    Shutdown,
    QueueClosed,
}

/// Serves one telnet connection to its end.
pub async fn serve(mut stream: TcpStream, ctx: &TelnetContext) -> std::io::Result<Ended> {
    let mut conn = Connection {
        ctx,
        batch: Vec::with_capacity(ctx.queue.batch_limit()),
        out: BytesMut::new(),
        discarding: false,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let (mut rd, mut wr) = stream.split();
    let ended = loop {
        let paused = conn.out.len() >= 4 * ctx.reply_buffer_bytes;
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ended::Shutdown,
            w = wr.write_buf(&mut conn.out), if !conn.out.is_empty() => { w?; continue; }
            r = read_more(&mut rd, &mut buf), if !paused => {
                if r? == 0 {
                    // A final line without a newline still counts.
                    if !buf.is_empty() && !conn.discarding {
                        let line = buf.split();
                        if conn.line(&line) {
                            break Ended::Exit;
                        }
                    }
                    break Ended::Eof;
                }
            }
        }
        let exit = conn.lines(&mut buf);
        if !conn.flush_batch().await {
            break Ended::QueueClosed;
        }
        if exit {
            break Ended::Exit;
        }
    };
    if !conn.flush_batch().await && ended != Ended::QueueClosed {
        tracing::debug!("queue closed before the last batch");
    }
    // Best effort: a client that never reads must not hold up shutdown.
    if !conn.out.is_empty() {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), wr.write_all(&conn.out)).await;
    }
    let _ = wr.shutdown().await;
    Ok(ended)
}

async fn read_more(
    rd: &mut tokio::net::tcp::ReadHalf<'_>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    rd.read_buf(buf).await
}

struct Connection<'a> {
    ctx: &'a TelnetContext,
    batch: Vec<Sample>,
    out: BytesMut,
    /// Inside an over-long line, skipping to its newline.
    discarding: bool,
}

impl Connection<'_> {
    /// Handles every complete line in `buf`; returns true on `exit`.
    fn lines(&mut self, buf: &mut BytesMut) -> bool {
        let max = self.ctx.max_line_bytes;
        while let Some(nl) = memchr(b'\n', buf) {
            let line = buf.split_to(nl + 1);
            let line = &line[..nl];
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if line.len() > max {
                self.too_long(line.len());
                continue;
            }
            if self.line(line) {
                return true;
            }
        }
        if buf.len() > max {
            // No newline within the limit: reply now, skip to the newline.
            if !self.discarding {
                self.too_long(buf.len());
            }
            self.discarding = true;
            buf.clear();
        }
        false
    }

    fn too_long(&mut self, len: usize) {
        self.ctx.stats.lines_received.fetch_add(1, Relaxed);
        let err = protocol::line_too_long(len, self.ctx.max_line_bytes);
        self.ctx.stats.rejected(err.kind());
        self.error_reply(&err.to_string());
    }

    /// Handles one line (without `\n`); returns true on `exit`.
    fn line(&mut self, line: &[u8]) -> bool {
        let ctx = self.ctx;
        ctx.stats.lines_received.fetch_add(1, Relaxed);
        match protocol::parse_line(line, &ctx.parse) {
            Ok(Command::Put(put)) => {
                ctx.stats.telnet_points.fetch_add(1, Relaxed);
                self.batch.push(Sample {
                    series: put.series_key(),
                    point: crate::model::DataPoint {
                        timestamp_ms: put.timestamp_ms,
                        value: put.value,
                    },
                });
            }
            Ok(Command::Version) => self.reply(&crate::server::version_reply()),
            Ok(Command::Help) => self.reply(protocol::HELP_REPLY),
            Ok(Command::Stats) => self.reply(&crate::server::stats_reply(&ctx.stats, &ctx.store)),
            Ok(Command::DropCaches) => {
                ctx.store.drop_caches();
                self.reply(protocol::DROPCACHES_REPLY);
            }
            Ok(Command::DieDieDie) => self.reply(protocol::DIEDIEDIE_REPLY),
            Ok(Command::Exit) => return true,
            Err(err) => {
                ctx.stats.rejected(err.kind());
                self.error_reply(&err.to_string());
            }
        }
        false
    }

    fn reply(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
    }

    fn error_reply(&mut self, text: &str) {
        if self.out.len() + text.len() + 1 > self.ctx.reply_buffer_bytes {
            self.ctx.stats.replies_dropped.fetch_add(1, Relaxed);
            return;
        }
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\n");
    }

    /// Pushes gathered points; false once the queue is closed.
    async fn flush_batch(&mut self) -> bool {
        let limit = self.ctx.queue.batch_limit();
        while !self.batch.is_empty() {
            let rest = if self.batch.len() > limit {
                self.batch.split_off(limit)
            } else {
                Vec::with_capacity(limit)
            };
            let samples = std::mem::replace(&mut self.batch, rest);
            let batch = Batch { samples, ack: None };
            if let Err(PushError::Closed) = self.ctx.queue.push(batch).await {
                return false;
            }
        }
        true
    }
}
