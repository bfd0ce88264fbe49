//! A connection whose peer takes none of what is written to it for a
//! while is closed: [`StallTimeout`] wraps every HTTP connection's stream
//! and fails a write (or flush) that has waited `timeout` for the peer.
//!
//! A query answer is streamed from a blocking thread that waits for the
//! body to take each chunk, and the body waits for the socket; a client
//! that sends a query and never reads (or reads a few bytes a minute)
//! would otherwise hold that thread, the answer in memory and a
//! `max-connections` slot forever. When the write fails, hyper drops the
//! connection and the response body with it, which frees the thread. Each
//! such close is counted (`tsd.connectionmgr.exceptions type=write_timeout`).
//!
//! The clock runs only while a write waits: an idle kept-alive connection
//! is the idle timeout's business, and any progress starts it over, so a
//! slow reader that keeps reading is served.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::stats::Stats;

/// `S` whose writes fail once one has waited `timeout` for the peer.
pub struct StallTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write waits for the peer.
    waiting: Option<Pin<Box<Sleep>>>,
    stats: Arc<Stats>,
}

impl<S> StallTimeout<S> {
    pub fn new(inner: S, timeout: Duration, stats: Arc<Stats>) -> StallTimeout<S> {
        StallTimeout {
            inner,
            timeout,
            waiting: None,
            stats,
        }
    }

    /// What a write that returned `polled` means: progress disarms the
    /// clock, a wait arms it, and a wait past `timeout` is an error.
    fn after<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match waiting.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.waiting = None;
                self.stats.http_write_timeouts.fetch_add(1, Relaxed);
                tracing::debug!(?timeout, "peer took nothing; closing the connection");
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took nothing for {} ms", timeout.as_millis()),
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.after(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.after(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_and_is_counted() {
        let stats = Arc::new(Stats::default());
        let (near, _far) = tokio::io::duplex(64);
        let mut s = StallTimeout::new(near, Duration::from_millis(50), stats.clone());
        let err = s.write_all(&[b'x'; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stats.http_write_timeouts.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        let stats = Arc::new(Stats::default());
        let (near, mut far) = tokio::io::duplex(16);
        // Every read is far within the timeout, the whole answer is not.
        let mut s = StallTimeout::new(near, Duration::from_secs(2), stats.clone());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 16];
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match far.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        s.write_all(&[b'x'; 1024]).await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        assert_eq!(reader.await.unwrap().len(), 1024);
        assert_eq!(stats.http_write_timeouts.load(Relaxed), 0);
    }
}
