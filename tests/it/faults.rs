//! Faults (issue 9): `/health`, and what rtsd does when the store cannot
//! take writes.

use crate::support::*;

#[tokio::test]
async fn health_is_ok_while_the_store_takes_writes() {
    let d = TestDaemon::start().await;
    let (status, body) = http(d.http(), "GET", "/health", b"").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = http(d.http(), "POST", "/health", b"").await;
    assert_eq!(status, 405);
    let (status, metrics) = http(d.http(), "GET", "/metrics", b"").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("\nrtsd_store_writable 1\n"), "{metrics}");
    d.stop().await;
}
