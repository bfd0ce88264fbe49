//! One telnet-style connection: framing, dispatch, bounded replies.
//!
//! Framing is not parsing: this module finds whole lines (`\n`-terminated,
//! the `\r` of CRLF is the parser's business), enforces `--max-line-bytes`,
//! and hands each line to the pure parser in `protocol`. Parsed points are
//! gathered into a batch per read and pushed onto the ingest queue.
//!
//! Error replies never block ingest. collectd, telegraf and potsdb never
//! read their socket, so error replies go into a buffer of
//! `reply_buffer_bytes`; what does not fit is dropped and counted
//! (`socket_writes_blocked`). Replies a client asked for (`version`, `help`,
//! `stats`, ...) are never dropped, because tcollector drops servers that
//! do not answer `version`. Instead, once the unsent replies pass
//! `reply_buffer_bytes`, the connection handles no further line and reads
//! nothing until the client has read them back under it: TCP pushes back
//! on a client that asks without reading, and `idle_timeout` closes it if
//! it never does. So a connection holds at most `reply_buffer_bytes` plus
//! one reply unsent and one read plus one line unread, however many
//! `stats` it is sent.
//!
//! `stats` and `dropcaches` run on the blocking pool, one at a time per
//! connection and in line order: `stats` takes the head's lock (with the
//! store's disk usage from the latest [`crate::survey`] rather than a walk
//! of the store per line), `dropcaches` empties RocksDB's block cache.
//!
//! A `put` of a new series beyond a cardinality limit gets its error reply
//! here and is not queued (see `cardinality`).
//!
//! With auth on, `put` needs a `write` token given with `auth basic` on
//! this connection, or a peer address in `write-networks`; other lines are
//! answered as before.
//!
//! A connection that neither sends nor reads for `idle_timeout` is closed,
//! so the half-open connections of collector hosts that rebooted give
//! their `max-connections` slots back (OpenTSDB's
//! `tsd.core.socket.timeout`).
//!
//! An over-long line gets one error reply and is skipped up to its newline;
//! the connection goes on (OpenTSDB closes it silently). On shutdown (or
//! idle timeout) the connection stops at a line boundary: every complete
//! line already read is processed and its points queued, then the socket
//! closes. Replies asked for by then are sent if they fit in
//! `reply_buffer_bytes` and dropped and counted otherwise; `stats` and
//! `dropcaches` are not carried out any more (and counted as dropped).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use memchr::memchr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Auth, Scope};
use crate::backend::SharedBackend;
use crate::cardinality::SeriesGate;
use crate::model::Sample;
use crate::protocol::{self, Command, Credentials, LineError, ParseOptions, SeriesCache};
use crate::queue::{Batch, PushError, QueueSender};
use crate::stats::Stats;
use crate::survey::Survey;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What every telnet connection shares.
pub struct TelnetContext {
    pub queue: QueueSender,
    pub stats: Arc<Stats>,
    pub store: SharedBackend,
    pub parse: ParseOptions,
    /// The cardinality limits, if any are set.
    pub series_gate: Option<Arc<SeriesGate>>,
    pub max_line_bytes: usize,
    pub reply_buffer_bytes: usize,
    /// Disk usage for `stats`, shared with the HTTP API.
    pub survey: Arc<Survey>,
    /// Tokens and write networks; with auth on, `put` needs one or the other.
    pub auth: Auth,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// An HTTP connection whose peer takes nothing for this long is closed.
    pub http_write_timeout: Duration,
    pub shutdown: CancellationToken,
}

impl TelnetContext {
    /// The rules of HTTP connections, which share this context's limits.
    pub fn http_rules(&self) -> crate::http::ConnectionRules {
        crate::http::ConnectionRules {
            shutdown: self.shutdown.clone(),
            idle_timeout: self.idle_timeout,
            write_timeout: self.http_write_timeout,
            stats: self.stats.clone(),
        }
    }
}

/// How a connection ended, for the connection span's log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Eof,
    Exit,
    Shutdown,
    QueueClosed,
    Idle,
}

/// Serves one telnet connection to its end.
pub async fn serve(mut stream: TcpStream, ctx: &TelnetContext) -> std::io::Result<Ended> {
    // With auth on, a peer in a write network may put at once; anyone
    // else after an `auth` with a write token.
    let may_write = !ctx.auth.enabled()
        || stream
            .peer_addr()
            .is_ok_and(|peer| ctx.auth.write_network(peer.ip()));
    let mut conn = Connection {
        ctx,
        may_write,
        framer: Framer::new(ctx.max_line_bytes),
        known: SeriesCache::default(),
        batch: Vec::new(),
        out: BytesMut::new(),
        closing: false,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let (mut rd, mut wr) = stream.split();
    let idle = tokio::time::sleep(ctx.idle_timeout);
    tokio::pin!(idle);
    let mut eof = false;
    let ended = loop {
        let stop = conn.lines(&mut buf);
        if !conn.flush_batch().await {
            break Ended::QueueClosed;
        }
        match stop {
            Stop::Exit => break Ended::Exit,
            Stop::Blocking(work) => {
                tokio::select! {
                    biased;
                    _ = ctx.shutdown.cancelled() => {
                        ctx.stats.replies_dropped.fetch_add(1, Relaxed);
                        break Ended::Shutdown;
                    }
                    text = answer(ctx, work) => conn.reply(&text),
                }
                continue;
            }
            Stop::Drained if eof => break Ended::Eof,
            Stop::Drained | Stop::Full => {}
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Ended::Shutdown,
            _ = idle.as_mut() => break Ended::Idle,
            w = wr.write_buf(&mut conn.out), if !conn.out.is_empty() => {
                // A client reading its replies is not idle, even while
                // this side reads nothing from it.
                if w? > 0 {
                    idle.as_mut().reset(Instant::now() + ctx.idle_timeout);
                }
            }
            r = read_more(&mut rd, &mut buf), if stop == Stop::Drained => {
                idle.as_mut().reset(Instant::now() + ctx.idle_timeout);
                if r? == 0 {
                    eof = true;
                    conn.framer.end(&mut buf);
                }
            }
        }
    };
    if ended != Ended::Exit {
        conn.closing = true;
        conn.lines(&mut buf);
    }
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

/// Does `work` on the blocking pool and gives its reply.
async fn answer(ctx: &TelnetContext, work: Blocking) -> String {
    let done = match work {
        Blocking::Stats => {
            let findings = ctx.survey.findings().await;
            let (stats, survey) = (ctx.stats.clone(), ctx.survey.clone());
            tokio::task::spawn_blocking(move || {
                crate::stats::stats_reply(&stats, &survey.storage_stats(&findings))
            })
            .await
        }
        Blocking::DropCaches => {
            let store = ctx.store.clone();
            tokio::task::spawn_blocking(move || {
                store.drop_caches();
                protocol::DROPCACHES_REPLY.to_string()
            })
            .await
        }
    };
    done.expect("stats and dropcaches never panic")
}

async fn read_more(
    rd: &mut tokio::net::tcp::ReadHalf<'_>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    rd.read_buf(buf).await
}

/// Finds whole lines in the read buffer and enforces the line limit.
/// Knows nothing of what a line says, so it is tested on its own.
struct Framer {
    max_line_bytes: usize,
    /// Inside an over-long line, skipping to its newline.
    discarding: bool,
}

/// What the framer found in the read buffer.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A whole line, without its `\n`.
    Line(BytesMut),
    /// A line longer than the limit; it is skipped up to its newline and
    /// reported once.
    TooLong,
}

impl Framer {
    fn new(max_line_bytes: usize) -> Framer {
        Framer {
            max_line_bytes,
            discarding: false,
        }
    }

    /// The next frame in `buf`, or `None` when `buf` holds no more whole
    /// line; what is left is the start of a line to be continued.
    fn next(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        while let Some(nl) = memchr(b'\n', buf) {
            let mut line = buf.split_to(nl + 1);
            line.truncate(nl);
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            if line.len() > self.max_line_bytes {
                return Some(Frame::TooLong);
            }
            return Some(Frame::Line(line));
        }
        if buf.len() > self.max_line_bytes {
            // No newline within the limit: report now, skip to the newline.
            buf.clear();
            if !std::mem::replace(&mut self.discarding, true) {
                return Some(Frame::TooLong);
            }
        }
        None
    }

    /// At end of input: a final line without a newline still counts, so
    /// it gets one (which also ends an over-long line being skipped).
    fn end(&mut self, buf: &mut BytesMut) {
        if !buf.is_empty() {
            buf.extend_from_slice(b"\n");
        }
    }
}

/// Why [`Connection::lines`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// No whole line is left in the read buffer.
    Drained,
    /// Unsent replies are past `reply_buffer_bytes`: no line is handled
    /// until the client reads some.
    Full,
    /// A command whose work runs off this task.
    Blocking(Blocking),
    /// `exit`.
    Exit,
}

/// Commands that take locks the writer holds, or RocksDB's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocking {
    Stats,
    DropCaches,
}

struct Connection<'a> {
    ctx: &'a TelnetContext,
    /// Whether `put` lines are accepted.
    may_write: bool,
    framer: Framer,
    /// Series this connection has put, by their text. Only puts that
    /// passed the write check and the cardinality gate are remembered,
    /// and neither takes back what it let through, so a line found here
    /// skips both.
    known: SeriesCache,
    batch: Vec<Sample>,
    out: BytesMut,
    /// Shutting down: the lines left are handled without waiting for the
    /// client to read, so asked-for replies can be dropped too.
    closing: bool,
}

impl Connection<'_> {
    /// Handles the complete lines in `buf` until one needs more than this
    /// task can do at once, or there are no more.
    fn lines(&mut self, buf: &mut BytesMut) -> Stop {
        loop {
            if !self.closing && self.out.len() > self.ctx.reply_buffer_bytes {
                return Stop::Full;
            }
            let stop = match self.framer.next(buf) {
                None => return Stop::Drained,
                Some(Frame::Line(line)) => self.line(&line),
                Some(Frame::TooLong) => {
                    self.too_long();
                    None
                }
            };
            if let Some(stop) = stop {
                return stop;
            }
        }
    }

    fn too_long(&mut self) {
        self.ctx.stats.lines_received.fetch_add(1, Relaxed);
        let err = protocol::line_too_long(self.ctx.max_line_bytes);
        self.ctx.stats.rejected(err.kind());
        self.error_reply(&err);
    }

    /// Handles one line (without `\n`); says why to stop, if it must.
    fn line(&mut self, line: &[u8]) -> Option<Stop> {
        let ctx = self.ctx;
        ctx.stats.lines_received.fetch_add(1, Relaxed);
        if let Some(sample) = self.known.put(line, &ctx.parse) {
            ctx.stats.telnet_points.fetch_add(1, Relaxed);
            self.batch.push(sample);
            return None;
        }
        match protocol::parse_line(line, &ctx.parse) {
            Ok(Command::Put(_)) if !self.may_write => {
                let err = protocol::not_authenticated();
                ctx.stats.rejected(err.kind());
                self.error_reply(&err);
            }
            Ok(Command::Put(put)) => {
                let series = put.series_key();
                let gate = ctx.series_gate.as_deref();
                if let Some(Err(limit)) = gate.map(|g| g.admit(&series)) {
                    let err = protocol::too_many_series(limit);
                    ctx.stats.rejected(err.kind());
                    self.error_reply(&err);
                    return None;
                }
                ctx.stats.telnet_points.fetch_add(1, Relaxed);
                self.known.remember(line, &series);
                self.batch.push(Sample {
                    series,
                    point: crate::model::DataPoint {
                        timestamp_ms: put.timestamp_ms,
                        value: put.value,
                    },
                });
            }
            Ok(Command::Version) => self.reply(&protocol::version_reply()),
            Ok(Command::Help) => self.reply(protocol::HELP_REPLY),
            Ok(Command::Stats) => return self.blocking(Blocking::Stats),
            Ok(Command::DropCaches) => return self.blocking(Blocking::DropCaches),
            Ok(Command::DieDieDie) => self.reply(protocol::DIEDIEDIE_REPLY),
            Ok(Command::Exit) => return Some(Stop::Exit),
            Ok(Command::Auth(given)) => self.auth(given),
            Err(err) => {
                ctx.stats.rejected(err.kind());
                self.error_reply(&err);
            }
        }
        None
    }

    /// Hands `work` to the serving loop; while closing it is not done.
    fn blocking(&mut self, work: Blocking) -> Option<Stop> {
        if self.closing {
            self.ctx.stats.replies_dropped.fetch_add(1, Relaxed);
            return None;
        }
        Some(Stop::Blocking(work))
    }

    /// `auth basic`: a write token lets this connection put. With auth
    /// off every `auth` succeeds, so a collector configured with a token
    /// keeps working against an rtsd without any. A failure keeps what the
    /// connection had.
    fn auth(&mut self, given: Option<Credentials<'_>>) {
        let auth = &self.ctx.auth;
        let granted = match given {
            _ if !auth.enabled() => Some(Access::ALL),
            Some(c) => auth.basic(c.name, c.secret),
            None => None,
        };
        match granted {
            Some(access) => {
                self.may_write |= access.allows(Scope::Write);
                self.reply(protocol::AUTH_SUCCESS_REPLY);
            }
            None => {
                self.ctx.stats.auth_refused_telnet.fetch_add(1, Relaxed);
                self.reply(protocol::AUTH_FAIL_REPLY);
            }
        }
    }

    /// Queues a reply the client asked for: [`Connection::lines`] keeps
    /// the unsent ones bounded by handling no more lines, except while
    /// closing, when one that does not fit is dropped.
    fn reply(&mut self, text: &str) {
        if self.closing && self.out.len() + text.len() > self.ctx.reply_buffer_bytes {
            self.ctx.stats.replies_dropped.fetch_add(1, Relaxed);
            return;
        }
        self.out.extend_from_slice(text.as_bytes());
    }

    fn error_reply(&mut self, err: &LineError) {
        let text = err.reply();
        if self.out.len() + text.len() + 1 > self.ctx.reply_buffer_bytes {
            self.ctx.stats.replies_dropped.fetch_add(1, Relaxed);
            return;
        }
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\n");
    }

    /// Pushes gathered points; false once the queue is closed.
    async fn flush_batch(&mut self) -> bool {
        let queue = &self.ctx.queue;
        for samples in queue.batches(std::mem::take(&mut self.batch)) {
            if let Err(PushError::Closed) = queue.push(Batch { samples, ack: None }).await {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    //! Framing alone: reads split anywhere, CRLF, over-long lines.

    use super::*;

    /// Feeds `reads` one after the other, as separate socket reads, and
    /// lists every frame (a line as text, an over-long line as `None`),
    /// then the line `end` makes of what is left at end of input.
    fn frames(max: usize, reads: &[&[u8]]) -> (Vec<Option<String>>, Option<String>) {
        let mut framer = Framer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for read in reads {
            buf.extend_from_slice(read);
            while let Some(frame) = framer.next(&mut buf) {
                out.push(match frame {
                    Frame::Line(l) => Some(String::from_utf8(l.to_vec()).unwrap()),
                    Frame::TooLong => None,
                });
            }
        }
        framer.end(&mut buf);
        let last = match framer.next(&mut buf) {
            Some(Frame::Line(l)) => Some(String::from_utf8(l.to_vec()).unwrap()),
            _ => None,
        };
        (out, last)
    }

    fn line(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn a_line_split_over_reads_is_one_frame() {
        let (got, last) = frames(100, &[b"put a 1 1", b" h=x\nput b", b" 2 2 h=y\n"]);
        assert_eq!(got, vec![line("put a 1 1 h=x"), line("put b 2 2 h=y")]);
        assert_eq!(last, None);
    }

    #[test]
    fn one_byte_per_read_still_frames_lines() {
        let text = b"version\nhelp\n";
        let reads: Vec<&[u8]> = text.chunks(1).collect();
        let (got, _) = frames(100, &reads);
        assert_eq!(got, vec![line("version"), line("help")]);
    }

    #[test]
    fn crlf_is_left_to_the_parser_and_empty_lines_are_lines() {
        let (got, _) = frames(100, &[b"version\r\n\n\r\n"]);
        assert_eq!(got, vec![line("version\r"), line(""), line("\r")]);
    }

    #[test]
    fn a_final_line_without_newline_is_handed_over_at_the_end() {
        let (got, last) = frames(100, &[b"version\nexi", b"t"]);
        assert_eq!(got, vec![line("version")]);
        assert_eq!(last, line("exit"));
    }

    #[test]
    fn a_line_at_the_limit_passes_and_one_byte_more_does_not() {
        let (got, _) = frames(4, &[b"1234\n12345\nok\n"]);
        assert_eq!(got, vec![line("1234"), None, line("ok")]);
    }

    #[test]
    fn an_over_long_line_across_reads_is_reported_once_and_skipped() {
        // The limit is passed before the newline arrives: reported at once,
        // then everything up to the newline is dropped, however many reads
        // it takes, and the next line frames normally.
        let (got, last) = frames(4, &[b"abcdefgh", b"ijklmnop", b"qr", b"st\nnext\n"]);
        assert_eq!(got, vec![None, line("next")]);
        assert_eq!(last, None);
    }

    #[test]
    fn an_over_long_final_line_is_not_handed_over() {
        let (got, last) = frames(4, &[b"ok\nabcdefgh"]);
        assert_eq!(got, vec![line("ok"), None]);
        assert_eq!(last, None);
    }
}
