//! The series index: series key ↔ id, the inverted index from names to
//! series, and the list of names for `/api/suggest`.
//!
//! The writer stages a new series' entries into the same write batch as the
//! log record that first mentions it ([`add_series`]), so an id found in the
//! log always resolves. On open the whole key → id map is loaded
//! ([`load_ids`]) so that ingest never reads RocksDB for a known series.
//! Readers go to RocksDB, where the block cache and bloom filters keep the
//! lookups cheap; nothing here is cached in memory for them.

use std::sync::Arc;

use rocksdb::{BoundColumnFamily, ReadOptions, WriteBatch};

use crate::model::SeriesKey;
use crate::model::{NameKind, SeriesMeta};

use super::{cf, keys, Shared, StoreError};

/// Handles of the families a new series writes to, fetched once per batch.
pub struct IndexFamilies<'a> {
    series: Arc<BoundColumnFamily<'a>>,
    series_by_id: Arc<BoundColumnFamily<'a>>,
    index: Arc<BoundColumnFamily<'a>>,
    names: Arc<BoundColumnFamily<'a>>,
}

impl<'a> IndexFamilies<'a> {
    pub fn new(shared: &'a Shared) -> Result<IndexFamilies<'a>, StoreError> {
        Ok(IndexFamilies {
            series: shared.cf(cf::SERIES)?,
            series_by_id: shared.cf(cf::SERIES_BY_ID)?,
            index: shared.cf(cf::INDEX)?,
            names: shared.cf(cf::NAMES)?,
        })
    }
}

/// Stages every index entry of the new series `key` with `id`. Names are
/// written again even when known: a put of an existing key is harmless and
/// cheaper than remembering every name in memory.
pub fn add_series(batch: &mut WriteBatch, f: &IndexFamilies<'_>, key: &SeriesKey, id: u64) {
    let id_key = keys::u64_key(id);
    batch.put_cf(&f.series, key.as_bytes(), id_key);
    batch.put_cf(&f.series_by_id, id_key, key.as_bytes());
    let metric = key.metric();
    batch.put_cf(&f.index, keys::metric_posting(metric, id), key.as_bytes());
    batch.put_cf(&f.names, keys::name(NameKind::Metric, metric), []);
    for (k, v) in key.tags() {
        batch.put_cf(&f.index, keys::tag_posting(k, v, id), []);
        batch.put_cf(&f.names, keys::name(NameKind::TagKey, k), []);
        batch.put_cf(&f.names, keys::name(NameKind::TagValue, v), []);
    }
}

/// Calls `f` on every entry of family `name` whose key starts with
/// `prefix`, in key order, until it returns `Ok(false)`.
fn scan_prefix(
    shared: &Shared,
    name: &'static str,
    prefix: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut ro = ReadOptions::default();
    if let Some(end) = keys::prefix_end(prefix) {
        ro.set_iterate_upper_bound(end);
    }
    let mut it = shared.db.raw_iterator_cf_opt(&shared.cf(name)?, ro);
    it.seek(prefix);
    while let Some((k, v)) = it.item() {
        if !f(k, v)? {
            return Ok(());
        }
        it.next();
    }
    Ok(it.status()?)
}

fn parse_key(family: &str, key: &[u8], bytes: &[u8]) -> Result<SeriesKey, StoreError> {
    SeriesKey::from_bytes(bytes)
        .ok_or_else(|| StoreError::corrupt(family, key, "malformed series key"))
}

/// Every series key with its id, and the highest id seen.
pub fn load_ids(shared: &Shared) -> Result<(foldhash::HashMap<SeriesKey, u64>, u64), StoreError> {
    let family = shared.cf(cf::SERIES)?;
    let estimate = shared
        .db
        .property_int_value_cf(&family, rocksdb::properties::ESTIMATE_NUM_KEYS)?
        .unwrap_or(0);
    let mut ids = foldhash::HashMap::default();
    ids.reserve(usize::try_from(estimate).unwrap_or(0));
    let mut max_id = 0;
    scan_prefix(shared, cf::SERIES, &[], |k, v| {
        let id = keys::parse_u64(v)
            .ok_or_else(|| StoreError::corrupt(cf::SERIES, k, "series id is not 8 bytes"))?;
        max_id = max_id.max(id);
        ids.insert(parse_key(cf::SERIES, k, k)?, id);
        Ok(true)
    })?;
    Ok((ids, max_id))
}

/// Every series of `metric`, by id.
pub fn series_of_metric(shared: &Shared, metric: &str) -> Result<Vec<SeriesMeta>, StoreError> {
    let mut out = Vec::new();
    scan_prefix(shared, cf::INDEX, &keys::metric_postings(metric), |k, v| {
        out.push(posting(k, v)?);
        Ok(true)
    })?;
    Ok(out)
}

fn posting(key: &[u8], value: &[u8]) -> Result<SeriesMeta, StoreError> {
    let id = keys::posting_id(key)
        .ok_or_else(|| StoreError::corrupt(cf::INDEX, key, "posting without id"))?;
    Ok(SeriesMeta {
        id,
        key: parse_key(cf::INDEX, key, value)?,
    })
}

/// Up to `max` names of `kind` starting with `prefix`, in byte order.
pub fn suggest(
    shared: &Shared,
    kind: NameKind,
    prefix: &str,
    max: usize,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    if max == 0 {
        return Ok(out);
    }
    scan_prefix(shared, cf::NAMES, &keys::name(kind, prefix), |k, _| {
        let name = std::str::from_utf8(keys::name_of(k))
            .map_err(|_| StoreError::corrupt(cf::NAMES, k, "name is not UTF-8"))?;
        out.push(name.to_owned());
        Ok(out.len() < max)
    })?;
    Ok(out)
}

pub fn name_exists(shared: &Shared, kind: NameKind, name: &str) -> Result<bool, StoreError> {
    let family = shared.cf(cf::NAMES)?;
    Ok(shared
        .db
        .get_pinned_cf(&family, keys::name(kind, name))?
        .is_some())
}

/// The wildcard of `/api/search/lookup` tag filters.
const ANY: &str = "*";

/// Series of `metric` (any metric when `None`) that carry, for every
/// `(key, value)` filter, a tag matching it (`*` matches anything); at most
/// `limit`, by id.
pub fn lookup(
    shared: &Shared,
    metric: Option<&str>,
    filters: &[(String, String)],
    limit: usize,
) -> Result<Vec<SeriesMeta>, StoreError> {
    let matches = |key: &SeriesKey| {
        filters.iter().all(|(fk, fv)| {
            key.tags()
                .any(|(k, v)| (fk == ANY || fk == k) && (fv == ANY || fv == v))
        })
    };
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut keep = |meta: SeriesMeta| {
        if matches(&meta.key) {
            out.push(meta);
        }
        out.len() < limit
    };
    // Drive the search from the narrowest posting list at hand: the
    // metric's, else the first filter naming a tag key, else every series.
    if let Some(m) = metric {
        scan_prefix(shared, cf::INDEX, &keys::metric_postings(m), |k, v| {
            Ok(keep(posting(k, v)?))
        })?;
    } else if let Some((fk, fv)) = filters.iter().find(|(k, _)| k != ANY) {
        let prefix = keys::tag_postings(fk, (fv != ANY).then_some(fv.as_str()));
        let mut ids = Vec::new();
        scan_prefix(shared, cf::INDEX, &prefix, |k, _| {
            ids.push(
                keys::posting_id(k)
                    .ok_or_else(|| StoreError::corrupt(cf::INDEX, k, "posting without id"))?,
            );
            Ok(true)
        })?;
        // Postings of one tag key are sorted by value, then id.
        ids.sort_unstable();
        ids.dedup();
        for meta in keys_of(shared, &ids)? {
            if !keep(meta) {
                break;
            }
        }
    } else {
        scan_prefix(shared, cf::SERIES_BY_ID, &[], |k, v| {
            let id = keys::parse_u64(k)
                .ok_or_else(|| StoreError::corrupt(cf::SERIES_BY_ID, k, "id is not 8 bytes"))?;
            Ok(keep(SeriesMeta {
                id,
                key: parse_key(cf::SERIES_BY_ID, k, v)?,
            }))
        })?;
    }
    Ok(out)
}

/// The keys of `ids` (sorted), skipping ids that have none.
pub fn keys_of(shared: &Shared, ids: &[u64]) -> Result<Vec<SeriesMeta>, StoreError> {
    let family = shared.cf(cf::SERIES_BY_ID)?;
    let id_keys: Vec<[u8; 8]> = ids.iter().map(|&id| keys::u64_key(id)).collect();
    let values = shared.db.batched_multi_get_cf(&family, &id_keys, true);
    let mut out = Vec::with_capacity(ids.len());
    for ((&id, id_key), value) in ids.iter().zip(&id_keys).zip(values) {
        if let Some(v) = value? {
            out.push(SeriesMeta {
                id,
                key: parse_key(cf::SERIES_BY_ID, id_key, &v)?,
            });
        }
    }
    Ok(out)
}
