//! systemd socket activation (`sd_listen_fds(3)`): listening sockets that
//! the service manager opened and passed as file descriptors 3 and up, so
//! `rtsd.socket` can hold ports 4242/4243 across restarts and upgrades and
//! collectors never see a refused connection.
//!
//! `main` calls [`from_env`] and hands the result to
//! [`crate::daemon::Daemon::start_with`], which serves on an inherited
//! socket instead of binding `--listen`/`--http-listen`. The sockets are
//! told apart by `$LISTEN_FDNAMES` (`FileDescriptorName=telnet` and `http`
//! in the socket unit); without names, the first is telnet and the second
//! HTTP. The `listenfd` crate checks `$LISTEN_PID` and that each descriptor
//! really is a TCP socket.

use std::net::TcpListener;

/// The telnet and HTTP names a socket unit gives its `ListenStream=`s.
const NAMES: [&str; 2] = ["telnet", "http"];

/// Listeners passed by the service manager; `None` where rtsd binds itself.
#[derive(Debug, Default)]
pub struct Inherited {
    pub telnet: Option<TcpListener>,
    pub http: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error(
        "socket activation: LISTEN_FDNAMES names {names} sockets but LISTEN_FDS passes {count}"
    )]
    CountMismatch { names: usize, count: usize },
    #[error("socket activation: socket name {0:?} is neither \"telnet\" nor \"http\"")]
    UnknownName(String),
    #[error("socket activation: two sockets are named {0:?}")]
    Duplicate(&'static str),
    #[error(
        "socket activation: {0} sockets passed without LISTEN_FDNAMES; at most 2 (telnet, http)"
    )]
    TooMany(usize),
    #[error(
        "socket activation: the {name} socket (fd {fd}) is not a listening TCP socket: {source}"
    )]
    NotTcp {
        name: &'static str,
        fd: usize,
        source: std::io::Error,
    },
}

/// Takes the sockets systemd passed, if any.
pub fn from_env() -> Result<Inherited, ActivationError> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(Inherited::default());
    }
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let [telnet, http] = assign(names.as_deref(), fds.len())?;
    let mut take = |index: Option<usize>, name: &'static str| {
        let Some(index) = index else { return Ok(None) };
        let not_tcp = |source| ActivationError::NotTcp {
            name,
            fd: 3 + index,
            source,
        };
        let listener = fds.take_tcp_listener(index).map_err(not_tcp)?;
        if let Some(l) = &listener {
            // Tokio requires a non-blocking socket; systemd passes blocking ones.
            l.set_nonblocking(true).map_err(not_tcp)?;
        }
        Ok(listener)
    };
    Ok(Inherited {
        telnet: take(telnet, NAMES[0])?,
        http: take(http, NAMES[1])?,
    })
}

/// Which of `count` passed sockets is telnet and which is HTTP.
fn assign(names: Option<&str>, count: usize) -> Result<[Option<usize>; 2], ActivationError> {
    let mut out = [None, None];
    let Some(names) = names else {
        if count > NAMES.len() {
            return Err(ActivationError::TooMany(count));
        }
        for (slot, index) in out.iter_mut().zip(0..count) {
            *slot = Some(index);
        }
        return Ok(out);
    };
    let names: Vec<&str> = names.split(':').collect();
    if names.len() != count {
        return Err(ActivationError::CountMismatch {
            names: names.len(),
            count,
        });
    }
    for (index, name) in names.into_iter().enumerate() {
        let slot = NAMES
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| ActivationError::UnknownName(name.to_string()))?;
        if out[slot].replace(index).is_some() {
            return Err(ActivationError::Duplicate(NAMES[slot]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_the_sockets_in_any_order() {
        assert_eq!(assign(Some("http:telnet"), 2).unwrap(), [Some(1), Some(0)]);
        assert_eq!(assign(Some("http"), 1).unwrap(), [None, Some(0)]);
    }

    #[test]
    fn without_names_the_order_is_telnet_then_http() {
        assert_eq!(assign(None, 2).unwrap(), [Some(0), Some(1)]);
        assert_eq!(assign(None, 1).unwrap(), [Some(0), None]);
    }

    #[test]
    fn bad_names_are_reported() {
        let err = |names, count| assign(names, count).unwrap_err().to_string();
        assert_eq!(
            err(Some("telnet:rtsd.socket"), 2),
            "socket activation: socket name \"rtsd.socket\" is neither \"telnet\" nor \"http\""
        );
        assert_eq!(
            err(Some("http:http"), 2),
            "socket activation: two sockets are named \"http\""
        );
        assert_eq!(
            err(Some("telnet"), 2),
            "socket activation: LISTEN_FDNAMES names 1 sockets but LISTEN_FDS passes 2"
        );
        assert_eq!(
            err(None, 3),
            "socket activation: 3 sockets passed without LISTEN_FDNAMES; at most 2 (telnet, http)"
        );
    }
}
