//! Loopback ports for servers a test or benchmark starts by number
//! (clickhouse-server, the rtsd binary), shared by `tests/it` and
//! `benches/load`.
//!
//! Binding port 0 and letting go hands out a port from the kernel's
//! ephemeral range, the same range every outgoing connection draws its local
//! port from. With tests running in parallel, some client's connection took
//! such a port before clickhouse-server bound it ("Address already in use").
//! Ports below that range are never given to outgoing connections, so one
//! that binds now stays free unless a server is told to use it.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out; below are well-known and registered services
/// a machine is likelier to run.
const FLOOR: u32 = 10_000;

/// A loopback port nothing listens on, never the same twice in one process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ceiling = ephemeral_low().max(FLOOR + 1_000);
    let span = ceiling - FLOOR;
    // Two test processes at once (CI jobs side by side) start apart.
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FLOOR + (offset + n) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FLOOR}..{ceiling}");
}

/// The first port of the kernel's ephemeral range (Linux's default when the
/// file cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
