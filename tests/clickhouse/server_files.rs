//! The files of a `clickhouse-server` that the integration tests and the
//! load bench start: loopback only, everything under one directory, the
//! `default` user without a password. Both include this file, so the two
//! never drift apart.

use std::path::Path;

/// Writes `config.xml` and `users.xml` into `dir`, which also holds the
/// server's data. `remote_servers` is a `<remote_servers>` element, or
/// empty for a server alone.
pub fn write(
    dir: &Path,
    http_port: u16,
    tcp_port: u16,
    remote_servers: &str,
) -> std::io::Result<()> {
    let config = include_str!("config.xml")
        .replace("@ROOT@", &dir.display().to_string())
        .replace("@HTTP_PORT@", &http_port.to_string())
        .replace("@TCP_PORT@", &tcp_port.to_string())
        .replace("@REMOTE_SERVERS@", remote_servers);
    std::fs::write(dir.join("config.xml"), config)?;
    std::fs::write(dir.join("users.xml"), include_str!("users.xml"))
}
