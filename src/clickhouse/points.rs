//! Points in ClickHouse: the RowBinary rows of the `points` table, written
//! in batches and read back per series as the same [`DataPoint`]s.
//!
//! A row is `series, ts, is_int, int_value, float_value, version`:
//! `Value::Int(i)` is `1, i, 0.0`, `Value::Float(f)` is `0, 0, f` with the
//! bits of `f` kept as they are (NaN included: the parser refuses NaN, but
//! the embedded store keeps whatever it is given, and so does this).

use crate::model::{DataPoint, Value};

use super::client::{ClickHouseError, Client, Compression};
use super::rowbinary::{PutRow, RowError, RowReader};
use super::schema::Identifier;

/// One point of one series, as shipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointRow {
    /// [`super::series_id`] of the point's series.
    pub series: u64,
    pub point: DataPoint,
    /// Orders writes of one (series, ts): the highest wins. Assigned once,
    /// when rtsd accepts the point, so a replay carries the same version.
    pub version: u64,
}

/// Appends `rows` to `out` in the table's column order.
pub fn encode(rows: &[PointRow], out: &mut Vec<u8>) {
    out.reserve(rows.len() * ROW_LEN);
    for row in rows {
        out.put_u64(row.series);
        out.put_i64(row.point.timestamp_ms);
        let (is_int, int_value, float_value) = match row.point.value {
            Value::Int(i) => (1, i, 0.0),
            Value::Float(f) => (0, 0, f),
        };
        out.put_u8(is_int);
        out.put_i64(int_value);
        out.put_f64(float_value);
        out.put_u64(row.version);
    }
}

const ROW_LEN: usize = 8 + 8 + 1 + 8 + 8 + 8;

/// Inserts `rows` into `database.points`.
pub async fn insert(
    client: &Client,
    database: &Identifier,
    rows: &[PointRow],
    compression: Compression,
) -> Result<(), ClickHouseError> {
    let mut body = Vec::new();
    encode(rows, &mut body);
    let statement = format!(
        "INSERT INTO {database}.points (series, ts, is_int, int_value, float_value, version) FORMAT RowBinary"
    );
    client.insert(&statement, body, compression).await
}

/// The points of `series` with `start_ms <= ts <= end_ms`, in time order,
/// one per timestamp: the highest version's. `FINAL` merges the rows of a
/// point that no background merge has met yet.
pub async fn read(
    client: &Client,
    database: &Identifier,
    series: u64,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<DataPoint>, ClickHouseError> {
    let answer = client
        .execute(&format!(
            "SELECT ts, is_int, int_value, float_value FROM {database}.points FINAL \
             WHERE series = {series} AND ts >= {start_ms} AND ts <= {end_ms} \
             ORDER BY ts FORMAT RowBinary"
        ))
        .await?;
    decode(&answer).map_err(|e| ClickHouseError::Answer(e.to_string()))
}

/// Reads `ts, is_int, int_value, float_value` rows.
fn decode(bytes: &[u8]) -> Result<Vec<DataPoint>, RowError> {
    let mut r = RowReader::new(bytes);
    let mut out = Vec::with_capacity(bytes.len() / 25);
    while !r.is_done() {
        out.push(r.point()?);
    }
    Ok(out)
}
