//! Writing samples to the ClickHouse store: the rows of their series, then
//! their points. The spool's shipper (`super::shipper`) calls this with
//! batches from the local spool, replayed after failures.
//!
//! **Series rows** carry the metric, the tags as two parallel arrays and
//! the full canonical key beside the id ([`super::series_id`]). Before
//! inserting, [`insert_series`] reads which of the batch's ids the table
//! already holds: an id held with another key is a hash collision, and so
//! is a second key of one batch with the first's id. Such a key is
//! refused ([`Inserted::refused`]): [`write`] fails the whole batch
//! ([`WriteError::Collision`]); the shipper drops the refused keys'
//! points, counts and logs them, and ships the rest, so one colliding key
//! (64-bit ids collide by chance only past billions of series, but a
//! client can search for one) cannot stall every other series. An id held
//! with the same key is not written again. Two nodes inserting a
//! colliding key at the same moment can both pass that check; their rows
//! stay apart (the key is in the table's sort key) and the reader refuses
//! the id ([`super::source`]), so a collision is never merged either way.
//!
//! **Points** go after their series rows, so a reader never finds a point
//! whose series it cannot name. Each carries a `version` (see [`super`]):
//! [`write`] numbers a batch's samples from `first_version` in order, so
//! a later sample of the same point in one batch wins, and a replay of the
//! batch with the same `first_version` changes nothing; [`write_rows`]
//! takes rows whose versions the caller chose (the shipper's come from
//! the spool's sequence).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Sample, SeriesKey};

use super::client::{ClickHouseError, Client, Compression};
use super::points::{self, PointRow};
use super::rowbinary::{PutRow, RowReader};
use super::schema::Identifier;
use super::{id_list, quoted, series_id, IDS_PER_STATEMENT};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    /// Two series keys share an id: the store cannot hold both.
    #[error("series id {id:016X} of {new} is already taken by {taken}; nothing of the batch was written")]
    Collision { id: u64, taken: String, new: String },
}

/// Writes `samples`: the rows of series not yet stored, then one point row
/// each, sample `i` with version `first_version + i`.
pub async fn write(
    client: &Client,
    database: &Identifier,
    samples: &[Sample],
    first_version: u64,
    compression: Compression,
) -> Result<(), WriteError> {
    let keys: Vec<&SeriesKey> = samples.iter().map(|s| &s.series).collect();
    let rows: Vec<PointRow> = samples
        .iter()
        .zip(first_version..)
        .map(|(s, version)| PointRow {
            series: series_id(&s.series),
            point: s.point,
            version,
        })
        .collect();
    write_rows(client, database, &keys, &rows, compression).await
}

/// Writes the rows of the series of `keys` not yet stored (keys may
/// repeat), then `rows`, whose series must all be among `keys`.
pub async fn write_rows(
    client: &Client,
    database: &Identifier,
    keys: &[&SeriesKey],
    rows: &[PointRow],
    compression: Compression,
) -> Result<(), WriteError> {
    if rows.is_empty() {
        return Ok(());
    }
    let inserted = insert_series(client, database, keys).await?;
    if let Some(r) = inserted.refused.into_iter().next() {
        return Err(collision(r.id, r.taken, &r.key));
    }
    points::insert(client, database, rows, compression).await?;
    Ok(())
}

/// What [`insert_series`] did.
#[derive(Debug, Default)]
pub struct Inserted {
    /// Series rows written.
    pub rows: usize,
    /// Keys whose id another key holds (stored, or earlier in the call).
    pub refused: Vec<Refused>,
}

/// A key refused for a hash collision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub id: u64,
    /// The key that holds the id, as text.
    pub taken: String,
    pub key: SeriesKey,
}

/// Inserts the rows of the series of `keys` the table does not hold yet
/// (keys may repeat), refusing keys whose id another key holds.
pub async fn insert_series(
    client: &Client,
    database: &Identifier,
    keys: &[&SeriesKey],
) -> Result<Inserted, ClickHouseError> {
    let mut out = Inserted::default();
    let mut wanted: BTreeMap<u64, &SeriesKey> = BTreeMap::new();
    for &key in keys {
        let id = series_id(key);
        match wanted.get(&id) {
            None => {
                wanted.insert(id, key);
            }
            Some(&first) if first != key => out.refused.push(Refused {
                id,
                taken: first.to_string(),
                key: key.clone(),
            }),
            Some(_) => {}
        }
    }
    let ids: Vec<u64> = wanted.keys().copied().collect();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let metrics: BTreeSet<&str> = chunk.iter().map(|id| wanted[id].metric()).collect();
        let metrics: Vec<String> = metrics.into_iter().map(quoted).collect();
        // The metric leads the table's sort key; naming it reads only the
        // batch's metrics instead of the whole table.
        let answer = client
            .execute(&format!(
                "SELECT DISTINCT series, key FROM {database}.series \
                 WHERE metric IN ({}) AND series IN ({}) FORMAT RowBinary",
                metrics.join(","),
                id_list(chunk)
            ))
            .await?;
        let mut r = RowReader::new(&answer);
        let mut stored_already = Vec::new();
        while !r.is_done() {
            let (id, stored) = (
                r.u64().map_err(answer_error)?,
                r.bytes().map_err(answer_error)?,
            );
            let Some(&key) = wanted.get(&id) else {
                return Err(answer_error(format!("series {id:016X} was not asked for")));
            };
            if stored != key.as_bytes() {
                let taken = SeriesKey::from_bytes(stored).map_or_else(
                    || String::from_utf8_lossy(stored).into_owned(),
                    |k| k.to_string(),
                );
                out.refused.push(Refused {
                    id,
                    taken,
                    key: key.clone(),
                });
            }
            stored_already.push(id);
        }
        for id in stored_already {
            wanted.remove(&id);
        }
    }
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut body = Vec::new();
    for (&id, key) in &wanted {
        body.put_u64(id);
        body.put_bytes(key.metric().as_bytes());
        let (tag_keys, tag_values): (Vec<&str>, Vec<&str>) = key.tags().unzip();
        body.put_strings(&tag_keys);
        body.put_strings(&tag_values);
        body.put_bytes(key.as_bytes());
    }
    client
        .insert(
            &format!(
                "INSERT INTO {database}.series (series, metric, tag_keys, tag_values, key) FORMAT RowBinary"
            ),
            body,
            Compression::None,
        )
        .await?;
    out.rows = wanted.len();
    Ok(out)
}

fn collision(id: u64, taken: String, new: &SeriesKey) -> WriteError {
    WriteError::Collision {
        id,
        taken,
        new: new.to_string(),
    }
}

fn answer_error(e: impl ToString) -> ClickHouseError {
    ClickHouseError::Answer(e.to_string())
}
