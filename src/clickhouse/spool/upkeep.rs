//! Retention and range deletes in ClickHouse: jobs the ingest thread
//! hands the shipper (see [`super`] for what each promises). The shipper
//! runs them between shipments on its own runtime, so the ingest thread
//! never waits on ClickHouse for expiry, and a delete runs only once
//! every record appended before it has shipped.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::clickhouse::client::ClickHouseError;
use crate::clickhouse::schema::{
    POINTS_PARTITION_MS, ROLLUP_1D_PARTITION_MS, ROLLUP_1H_PARTITION_MS,
};
use crate::clickhouse::{id_list, IDS_PER_STATEMENT};
use crate::model::{DAY_MS, HOUR_MS};
use crate::storage::Retention;

use super::shared::{DeleteJob, Target};

/// First wait between looks at `system.mutations`, doubled up to
/// [`MUTATION_POLL_MAX`]: a small delete is seen done within milliseconds,
/// a long one is not asked about hundreds of times.
const MUTATION_POLL_MIN: Duration = Duration::from_millis(10);
const MUTATION_POLL_MAX: Duration = Duration::from_millis(500);

/// The partitioned tables: name, one partition's span, its retention.
fn partitioned(retention: &Retention) -> [(&'static str, i64, Option<i64>); 3] {
    [
        ("points", POINTS_PARTITION_MS, retention.raw_ms),
        ("rollup_1h", ROLLUP_1H_PARTITION_MS, retention.rollup_1h_ms),
        ("rollup_1d", ROLLUP_1D_PARTITION_MS, retention.rollup_1d_ms),
    ]
}

/// What one expiry did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Expired {
    pub dropped: u64,
    pub errors: u64,
}

/// Drops every partition of the storage tables on each of `target`'s
/// servers ([`Target::servers`]) whose whole span ends at or before its
/// kind's retention cutoff at `now_ms` (the embedded store's rule). A
/// failed statement is counted and the rest go on; the next expiry tries
/// again.
pub(super) async fn expire(target: &Target, retention: &Retention, now_ms: i64) -> Expired {
    let mut out = Expired::default();
    for server in target.servers() {
        let done = expire_on(&server, retention, now_ms).await;
        out.dropped += done.dropped;
        out.errors += done.errors;
    }
    out
}

/// [`expire`] on `target`'s own server.
async fn expire_on(target: &Target, retention: &Retention, now_ms: i64) -> Expired {
    let mut out = Expired::default();
    let db = &target.database;
    for (table, span, keep) in partitioned(retention) {
        let Some(keep) = keep else { continue };
        let cutoff = now_ms.saturating_sub(keep);
        let stored = target.layout.storage_name(table);
        let listed = target
            .client
            .select_rows(&format!(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = '{db}' AND table = '{stored}' AND active"
            ))
            .await;
        let partitions = match listed {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, table = %stored, "listing partitions for retention failed; will retry");
                out.errors += 1;
                continue;
            }
        };
        for row in partitions {
            let Some(id) = row.first() else { continue };
            // `intDiv(.., span)` partitions are named by their number; a
            // partition of anything else is not rtsd's to drop.
            let Ok(number) = id.parse::<i64>() else {
                tracing::warn!(table = %stored, partition = %id, "partition is not a number; left alone");
                continue;
            };
            let end = number.saturating_add(1).saturating_mul(span);
            if end > cutoff {
                continue;
            }
            let dropped = target
                .client
                .execute(&format!(
                    "ALTER TABLE {db}.{stored} DROP PARTITION ID '{number}'"
                ))
                .await;
            match dropped {
                Ok(_) => {
                    tracing::info!(table = %stored, partition = number, "dropped expired partition");
                    out.dropped += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, table = %stored, partition = number, "dropping expired partition failed; will retry");
                    out.errors += 1;
                }
            }
        }
    }
    out
}

/// Runs `job` against `target`: counts the points of its series in its
/// range (`FINAL`: each point once, as the embedded store counts), then
/// deletes them, and the rollup rows of every hour and day the range
/// touches, by mutations, and waits until ClickHouse has applied them.
/// Bounded by the job's deadline.
pub(super) async fn delete(target: &Target, job: &DeleteJob) -> Result<Deleted, String> {
    let deadline = tokio::time::Instant::from_std(job.deadline);
    let all = async {
        let mut out = Deleted::default();
        // Each point is on one shard: the counts add up.
        for server in target.servers() {
            let done = delete_now(&server, job).await?;
            out.points += done.points;
            out.days.extend(done.days);
        }
        Ok::<_, DeleteError>(out)
    };
    match tokio::time::timeout_at(deadline, all).await {
        Ok(result) => result.map_err(|e| format!("clickhouse delete failed: {e}")),
        Err(_) => Err(
            "clickhouse delete did not finish within the delete timeout; \
             ClickHouse may still apply what it started"
                .to_owned(),
        ),
    }
}

/// Why a delete step failed.
#[derive(Debug, thiserror::Error)]
enum DeleteError {
    #[error("{what}: {source}")]
    ClickHouse {
        what: String,
        #[source]
        source: ClickHouseError,
    },
    #[error("{0}")]
    Answer(String),
}

/// What a delete did: how many points went, and a `(series, day start)`
/// for every day of the touched series that held points around the range
/// (from the first touched day's start to the last one's end): the days
/// whose rollup rows it dropped, to be computed again.
#[derive(Debug, Default)]
pub(super) struct Deleted {
    pub points: u64,
    pub days: Vec<(u64, i64)>,
}

/// [`delete`] on `target`'s own server.
async fn delete_now(target: &Target, job: &DeleteJob) -> Result<Deleted, DeleteError> {
    let mut ids = job.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let (from, to) = (job.from, job.to);
    let mut out = Deleted::default();
    if ids.is_empty() || from > to {
        return Ok(out);
    }
    let db = &target.database;
    let points = target.layout.storage_name("points");
    // The rollup rows of every bucket the range touches: a bucket only
    // partly in the range loses the aggregate of its kept points too,
    // but no rollup ever counts a deleted point; the shipper computes
    // the touched days again (`Deleted::days`). A read never uses a row
    // that does not match the points anyway (see `rollups`).
    let rollups = [("rollup_1h", HOUR_MS), ("rollup_1d", DAY_MS)].map(|(t, bucket)| {
        (
            target.layout.storage_name(t),
            from.div_euclid(bucket) * bucket,
        )
    });
    let mut tables: Vec<&str> = vec![&points];
    tables.extend(rollups.iter().map(|(t, _)| t.as_str()));
    // Mutations already there are not ours to wait for.
    let before = mutations(target, &tables, false).await?;
    let mut deleted = 0;
    let mut altered = false;
    let (first_day, end_day) = (
        from.div_euclid(DAY_MS) * DAY_MS,
        to.div_euclid(DAY_MS)
            .saturating_add(1)
            .saturating_mul(DAY_MS),
    );
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let list = id_list(chunk);
        // Before the points go: the days that had any.
        let days_sql = format!(
            "SELECT DISTINCT series, toInt64(intDiv(ts, {DAY_MS}) * {DAY_MS}) FROM {db}.{points} \
             WHERE series IN ({list}) AND ts >= {first_day} AND ts < {end_day} FORMAT RowBinary"
        );
        let answer =
            target
                .client
                .execute(&days_sql)
                .await
                .map_err(|source| DeleteError::ClickHouse {
                    what: format!("reading the days of {db}.{points} a delete touches"),
                    source,
                })?;
        let mut r = crate::clickhouse::rowbinary::RowReader::new(&answer);
        while !r.is_done() {
            let pair = (|| Ok::<_, crate::clickhouse::rowbinary::RowError>((r.u64()?, r.i64()?)))();
            out.days
                .push(pair.map_err(|e| DeleteError::Answer(format!("touched days: {e}")))?);
        }
        let mut steps = vec![(
            points.as_str(),
            format!("series IN ({list}) AND ts >= {from} AND ts <= {to}"),
            " FINAL",
        )];
        for (table, lo) in &rollups {
            steps.push((
                table,
                format!("series IN ({list}) AND start >= {lo} AND start <= {to}"),
                "",
            ));
        }
        for (i, (table, filter, final_)) in steps.into_iter().enumerate() {
            let n = count(
                target,
                &format!("SELECT count() FROM {db}.{table}{final_} WHERE {filter}"),
            )
            .await?;
            if i == 0 {
                deleted += n;
            }
            // An empty range makes no mutation: each rewrites parts.
            if n == 0 {
                continue;
            }
            let alter = format!("ALTER TABLE {db}.{table} DELETE WHERE {filter}");
            target
                .client
                .execute(&alter)
                .await
                .map_err(|source| DeleteError::ClickHouse {
                    what: format!("deleting from {db}.{table}"),
                    source,
                })?;
            altered = true;
        }
    }
    if altered {
        let mut pause = MUTATION_POLL_MIN;
        while !mutations(target, &tables, true).await?.is_subset(&before) {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MUTATION_POLL_MAX);
        }
    }
    out.points = deleted;
    Ok(out)
}

/// The ids of the mutations of `tables` (only those not done yet, with
/// `pending`), each with its table.
async fn mutations(
    target: &Target,
    tables: &[&str],
    pending: bool,
) -> Result<BTreeSet<(String, String)>, DeleteError> {
    let names: Vec<String> = tables.iter().map(|t| format!("'{t}'")).collect();
    let sql = format!(
        "SELECT table, mutation_id FROM system.mutations \
         WHERE database = '{}' AND table IN ({}){}",
        target.database,
        names.join(","),
        if pending { " AND is_done = 0" } else { "" }
    );
    let rows = target
        .client
        .select_rows(&sql)
        .await
        .map_err(|source| DeleteError::ClickHouse {
            what: "reading system.mutations".to_owned(),
            source,
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|row| <[String; 2]>::try_from(row).ok())
        .map(|[table, id]| (table, id))
        .collect())
}

async fn count(target: &Target, sql: &str) -> Result<u64, DeleteError> {
    let rows = target
        .client
        .select_rows(sql)
        .await
        .map_err(|source| DeleteError::ClickHouse {
            what: "counting the rows to delete".to_owned(),
            source,
        })?;
    rows.first()
        .and_then(|r| r.first())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| DeleteError::Answer(format!("{sql}: answer is not a count: {rows:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_expires_by_its_own_retention() {
        let r = Retention {
            raw_ms: Some(1),
            rollup_1h_ms: None,
            rollup_1d_ms: Some(3),
        };
        let kept: Vec<_> = partitioned(&r).iter().map(|(t, _, k)| (*t, *k)).collect();
        assert_eq!(
            kept,
            [
                ("points", Some(1)),
                ("rollup_1h", None),
                ("rollup_1d", Some(3))
            ]
        );
    }
}
