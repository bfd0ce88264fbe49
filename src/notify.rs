//! systemd's service notification protocol (`sd_notify(3)`), so a
//! `Type=notify` unit knows when rtsd is ready, when it is stopping, and that
//! it is still alive (`WatchdogSec=`).
//!
//! The protocol is one datagram of `KEY=value` lines sent to the unix socket
//! named by `$NOTIFY_SOCKET`: a path, or an abstract socket spelled with a
//! leading `@`. Without the variable every call is a no-op, so the daemon
//! runs the same under a terminal, a test or another supervisor. `main`
//! sends `READY=1` once [`crate::daemon::Daemon::start`] returned (store
//! open, both ports listening) and runs [`Notifier::supervise`], which pings
//! the watchdog and reports `STOPPING=1` the moment shutdown begins.
//!
//! A failed send is logged, never fatal: losing the supervisor's socket must
//! not take the time-series data path down with it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why `$NOTIFY_SOCKET` or `$WATCHDOG_USEC` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute path nor an @abstract name")]
    BadSocket(String),
    #[error("NOTIFY_SOCKET {path:?}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    #[error("WATCHDOG_USEC {0:?} is not a positive number of microseconds")]
    BadWatchdog(String),
}

/// Where notifications go; cheap to clone. A disabled notifier (no
/// `$NOTIFY_SOCKET`) ignores every call.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
    /// How often to ping the watchdog: half of `$WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` recommends, so one late ping is not fatal.
    watchdog: Option<Duration>,
}

struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for log messages.
    name: String,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID`.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let watchdog_pid = var("WATCHDOG_PID");
        // A watchdog meant for another process (our parent, say) is not ours
        // to feed.
        let watchdog_usec = var("WATCHDOG_USEC")
            .filter(|_| watchdog_pid.map_or(true, |p| p == std::process::id().to_string()));
        Notifier::new(var("NOTIFY_SOCKET").as_deref(), watchdog_usec.as_deref())
    }

    /// A notifier for `socket` (`$NOTIFY_SOCKET`'s syntax) pinging a
    /// watchdog of `watchdog_usec` microseconds.
    pub fn new(socket: Option<&str>, watchdog_usec: Option<&str>) -> Result<Notifier, NotifyError> {
        let Some(name) = socket else {
            return Ok(Notifier::default());
        };
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)
        } else {
            return Err(NotifyError::BadSocket(name.to_string()));
        };
        let socket_error = |source| NotifyError::Socket {
            path: name.to_string(),
            source,
        };
        let addr = addr.map_err(socket_error)?;
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        let watchdog = match watchdog_usec {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(usec) if usec > 0 => Some(Duration::from_micros(usec) / 2),
                _ => return Err(NotifyError::BadWatchdog(text.to_string())),
            },
        };
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr,
                name: name.to_string(),
            })),
            watchdog,
        })
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog ping period, if the service manager asked for pings.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.target.as_ref().and(self.watchdog)
    }

    /// `READY=1` with a human-readable status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\n"));
    }

    /// `STOPPING=1` with a human-readable status line.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }

    fn send(&self, message: &str) {
        let Some(target) = &self.target else { return };
        // A datagram send on a unix socket does not block for long: the
        // receiver's queue is small and systemd reads it promptly.
        if let Err(e) = target.socket.send_to_addr(message.as_bytes(), &target.addr) {
            tracing::warn!(socket = %target.name, error = %e, "cannot notify the service manager");
        }
    }

    /// Pings the watchdog until `shutdown` is cancelled, then reports
    /// `STOPPING=1`. Returns when that is sent; await it before exiting so
    /// the message is not lost with the runtime.
    pub async fn supervise(self, shutdown: CancellationToken) {
        match self.watchdog_period() {
            Some(period) => {
                let mut ticks = tokio::time::interval(period);
                // After a stall, one ping proves liveness; a burst adds nothing.
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = ticks.tick() => self.send("WATCHDOG=1\n"),
                    }
                }
            }
            None => shutdown.cancelled().await,
        }
        self.stopping("draining the queue and flushing the store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (dir, socket, path.to_str().unwrap().to_string())
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_path_socket() {
        let (_dir, socket, path) = receiver();
        let n = Notifier::new(Some(&path), None).unwrap();
        n.ready("serving");
        assert_eq!(recv(&socket), "READY=1\nSTATUS=serving\n");
        assert_eq!(n.watchdog_period(), None);
    }

    #[test]
    fn abstract_sockets_are_spelled_with_an_at_sign() {
        let name = format!("rtsd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Notifier::new(Some(&format!("@{name}")), None)
            .unwrap()
            .stopping("bye");
        assert_eq!(recv(&socket), "STOPPING=1\nSTATUS=bye\n");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_no_watchdog_runs() {
        let n = Notifier::new(None, Some("1000")).unwrap();
        assert!(!n.enabled());
        assert_eq!(n.watchdog_period(), None);
        n.ready("ignored");
    }

    #[test]
    fn bad_variables_are_reported_with_their_value() {
        let err = Notifier::new(Some("relative/path"), None).err().unwrap();
        assert_eq!(
            err.to_string(),
            "NOTIFY_SOCKET \"relative/path\" is neither an absolute path nor an @abstract name"
        );
        let err = Notifier::new(Some("/run/x"), Some("0")).err().unwrap();
        assert_eq!(
            err.to_string(),
            "WATCHDOG_USEC \"0\" is not a positive number of microseconds"
        );
    }

    #[tokio::test]
    async fn supervise_pings_at_half_the_timeout_and_reports_stopping() {
        let (_dir, socket, path) = receiver();
        let n = Notifier::new(Some(&path), Some("200000")).unwrap();
        assert_eq!(n.watchdog_period(), Some(Duration::from_millis(100)));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(n.supervise(shutdown.clone()));
        let first = tokio::task::spawn_blocking(move || (recv(&socket), socket))
            .await
            .unwrap();
        assert_eq!(first.0, "WATCHDOG=1\n");
        shutdown.cancel();
        task.await.unwrap();
        let socket = first.1;
        // Pings sent before the cancellation may still be queued.
        let last = std::iter::repeat_with(|| recv(&socket))
            .find(|m| m != "WATCHDOG=1\n")
            .unwrap();
        assert_eq!(
            last,
            "STOPPING=1\nSTATUS=draining the queue and flushing the store\n"
        );
    }
}
