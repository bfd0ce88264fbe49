//! The series index on disk: series key → id, and the list of names for
//! `/api/suggest` and "No such name".
//!
//! The writer stages a new series' entries into the same write batch as the
//! log record that first mentions it ([`add_series`]), so an id found in the
//! log always resolves. On open the whole key → id map is loaded
//! ([`load_ids`]): ingest never reads RocksDB for a known series, and the
//! readers' posting lists (`series_index`) are built from it in memory.

use std::sync::Arc;

use rocksdb::{BoundColumnFamily, ReadOptions, WriteBatch};

use crate::model::NameKind;
use crate::model::SeriesKey;

use super::series_index::SeriesIndex;
use super::{cf, keys, Shared, StoreError};

/// Handles of the families a new series writes to, fetched once per batch.
pub struct IndexFamilies<'a> {
    series: Arc<BoundColumnFamily<'a>>,
    names: Arc<BoundColumnFamily<'a>>,
}

impl<'a> IndexFamilies<'a> {
    pub fn new(shared: &'a Shared) -> Result<IndexFamilies<'a>, StoreError> {
        Ok(IndexFamilies {
            series: shared.cf(cf::SERIES)?,
            names: shared.cf(cf::NAMES)?,
        })
    }
}

/// Stages the index entries of the new series `key` with `id`: its key,
/// and those of its names `names` does not know.
pub fn add_series(
    batch: &mut WriteBatch,
    f: &IndexFamilies<'_>,
    key: &SeriesKey,
    id: u64,
    names: NewNames<'_>,
) {
    batch.put_cf(&f.series, key.as_bytes(), keys::u64_key(id));
    let mut put = |kind, name: &str| {
        let name_key = keys::name(kind, name);
        if names.written.insert(name_key.clone()) {
            batch.put_cf(&f.names, name_key, []);
        }
    };
    if !names.index.has_metric(key.metric()) {
        put(NameKind::Metric, key.metric());
    }
    for (k, v) in key.tags() {
        if !names.index.has_tag_key(k) {
            put(NameKind::TagKey, k);
        }
        if !names.index.has_tag(k, v) {
            put(NameKind::TagValue, v);
        }
    }
}

/// Which names one commit's new series still need in the `names` family.
/// Each put of a name already there cost a memtable entry all the same,
/// three to five per series: at 40,000 new series, 10 MiB of memtable
/// holding the same few names over and over.
pub struct NewNames<'a> {
    /// Names of the series committed before; a tag value it holds under
    /// another key is put again, which is harmless.
    pub index: &'a SeriesIndex,
    /// Name keys put by this commit.
    pub written: &'a mut foldhash::HashSet<Vec<u8>>,
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
