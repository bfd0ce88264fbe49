//! Annotations: OpenTSDB's notes on one series (a deploy, an outage) or on
//! everything (global), kept in the `annotations` family and read back by
//! `/api/annotation` and `/api/query`.
//!
//! A note is identified by its series (none for a global one) and its
//! start time. The key is `series id ‖ start ms` ([`cf::ANNOTATIONS`]), with
//! id 0 for global notes, so one series' notes, or the global ones, are a
//! contiguous, time-ordered range. `startTime` is kept as the client gave
//! it, seconds or ms; the key converts it with OpenTSDB's rule
//! ([`epoch_ms`]), so `1369141261` and `1369141261000` name the same note.
//!
//! Unlike points, annotations are written here, from the HTTP request's
//! blocking task, not by the writer thread: they are rare (a human or a CI
//! job marking an event), so they gain nothing from batching, and a POST
//! must answer with what is stored after merging with the previous note,
//! which the writer's fire-and-forget queue cannot return. The
//! read-modify-writes hold a lock so two requests on one note cannot lose
//! each other's fields, and every write is synced: the client was told it
//! is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rocksdb::{WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::cf;
use super::keys;
use super::{Shared, StoreError, StoreReader};
use crate::model::epoch_ms;

/// First byte of every value; a later format can convert them one by one.
const RECORD_VERSION: u8 = 1;

/// The key id of global notes; series ids start at 1.
const GLOBAL: u64 = 0;

/// One annotation. Field names are OpenTSDB's, which the stored JSON
/// shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Annotation {
    /// The series noted; `None` for a global note. Kept in the key.
    #[serde(skip)]
    pub series: Option<u64>,
    /// Epoch seconds or ms, as given; required (at least 1).
    #[serde(rename = "startTime")]
    pub start_time: i64,
    /// Epoch seconds or ms, 0 when the event has not ended.
    #[serde(rename = "endTime")]
    pub end_time: i64,
    /// A short line for graphs.
    pub description: String,
    pub notes: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<BTreeMap<String, String>>,
}

impl Annotation {
    /// The start in ms, the key's time.
    pub fn start_ms(&self) -> i64 {
        epoch_ms(self.start_time)
    }

    fn key(&self) -> [u8; keys::SERIES_TIME_LEN] {
        key(self.series, self.start_ms())
    }
}

fn key(series: Option<u64>, start_ms: i64) -> [u8; keys::SERIES_TIME_LEN] {
    keys::series_time(series.unwrap_or(GLOBAL), start_ms)
}

fn encode(note: &Annotation) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Strings, integers and a string map always serialise.
    serde_json::to_writer(&mut out, note).unwrap_or_default();
    out
}

fn decode(key: &[u8], value: &[u8]) -> Result<Annotation, StoreError> {
    let corrupt = |detail: String| StoreError::corrupt(cf::ANNOTATIONS, key, detail);
    let (id, _) = keys::parse_series_time(key).ok_or_else(|| corrupt("malformed key".into()))?;
    let json = match value.split_first() {
        Some((&RECORD_VERSION, json)) => json,
        _ => return Err(corrupt("unknown annotation record version".into())),
    };
    let mut note: Annotation = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    note.series = (id != GLOBAL).then_some(id);
    Ok(note)
}

/// The annotation store; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Annotations {
    shared: Arc<Shared>,
}

impl StoreReader {
    /// The annotations of this store.
    pub fn annotations(&self) -> Annotations {
        Annotations {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Annotations {
    /// The note of `series` (global if `None`) starting at `start_ms`.
    pub fn get(
        &self,
        series: Option<u64>,
        start_ms: i64,
    ) -> Result<Option<Annotation>, StoreError> {
        let family = self.shared.cf(cf::ANNOTATIONS)?;
        let key = key(series, start_ms);
        match self.shared.db.get_pinned_cf(&family, key)? {
            Some(value) => decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// The notes of `series` (global if `None`) starting in `[from_ms, to_ms]`,
    /// by start.
    pub fn range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        self.of_ids(&[series.unwrap_or(GLOBAL)], from_ms, to_ms)
    }

    /// The notes of every series in `ids` (sorted, no global id) starting in
    /// `[from_ms, to_ms]`, by series then start. One iterator walks the
    /// family, seeking only to ids it has not already passed, so a query
    /// over thousands of series costs a few seeks when notes are rare.
    pub fn of_series(
        &self,
        ids: &[u64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, StoreError> {
        self.of_ids(ids, from_ms, to_ms)
    }

    fn of_ids(&self, ids: &[u64], from_ms: i64, to_ms: i64) -> Result<Vec<Annotation>, StoreError> {
        let mut out = Vec::new();
        if from_ms > to_ms {
            return Ok(out);
        }
        let family = self.shared.cf(cf::ANNOTATIONS)?;
        let mut it = self.shared.db.raw_iterator_cf(&family);
        // The id of the key the iterator stands on; `None` once past the end.
        let mut at: Option<Option<u64>> = None;
        for &id in ids {
            match at {
                Some(None) => break,
                Some(Some(next)) if next > id => continue,
                _ => {}
            }
            it.seek(keys::series_time(id, from_ms));
            while let Some((k, v)) = it.item() {
                let (kid, start) = keys::parse_series_time(k)
                    .ok_or_else(|| StoreError::corrupt(cf::ANNOTATIONS, k, "malformed key"))?;
                if kid != id || start > to_ms {
                    break;
                }
                out.push(decode(k, v)?);
                it.next();
            }
            it.status()?;
            at = Some(
                it.key()
                    .and_then(keys::parse_series_time)
                    .map(|(kid, _)| kid),
            );
        }
        Ok(out)
    }

    /// Stores every note, each combined with the one already stored at its
    /// key (or written earlier in this call) by `merge(stored, given)`, in
    /// one synced batch; returns what was stored, in order.
    pub fn upsert(
        &self,
        notes: Vec<Annotation>,
        merge: impl Fn(Annotation, Annotation) -> Annotation,
    ) -> Result<Vec<Annotation>, StoreError> {
        let _lock = self.shared.annotation_writes.lock();
        let family = self.shared.cf(cf::ANNOTATIONS)?;
        let mut batch = WriteBatch::default();
        let mut written: HashMap<[u8; keys::SERIES_TIME_LEN], Annotation> = HashMap::new();
        let mut out = Vec::with_capacity(notes.len());
        for note in notes {
            let key = note.key();
            let stored = match written.remove(&key) {
                Some(earlier) => Some(earlier),
                None => match self.shared.db.get_pinned_cf(&family, key)? {
                    Some(value) => Some(decode(&key, &value)?),
                    None => None,
                },
            };
            let merged = match stored {
                Some(stored) => merge(stored, note),
                None => note,
            };
            batch.put_cf(&family, key, encode(&merged));
            written.insert(key, merged.clone());
            out.push(merged);
        }
        self.write(batch)?;
        Ok(out)
    }

    /// Deletes the note of `series` at `start_ms`, if there is one.
    pub fn delete(&self, series: Option<u64>, start_ms: i64) -> Result<(), StoreError> {
        let _lock = self.shared.annotation_writes.lock();
        let family = self.shared.cf(cf::ANNOTATIONS)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(&family, key(series, start_ms));
        self.write(batch)
    }

    /// Deletes the notes of `series` starting in `[from_ms, to_ms]`;
    /// returns how many there were.
    pub fn delete_range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, StoreError> {
        let _lock = self.shared.annotation_writes.lock();
        let found = self.range(series, from_ms, to_ms)?;
        if found.is_empty() {
            return Ok(0);
        }
        let family = self.shared.cf(cf::ANNOTATIONS)?;
        let mut batch = WriteBatch::default();
        for note in &found {
            batch.delete_cf(&family, note.key());
        }
        self.write(batch)?;
        Ok(found.len())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        Ok(self.shared.db.write_opt(batch, &opts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, StoreOptions};
    use super::*;

    fn note(series: Option<u64>, start_time: i64, description: &str) -> Annotation {
        Annotation {
            series,
            start_time,
            description: description.into(),
            ..Annotation::default()
        }
    }

    fn open(dir: &std::path::Path) -> Annotations {
        let (_writer, reader) = Store::open(dir, StoreOptions::default()).expect("store opens");
        reader.annotations()
    }

    fn replace(_: Annotation, given: Annotation) -> Annotation {
        given
    }

    #[test]
    fn seconds_and_ms_follow_opentsdbs_rule() {
        assert_eq!(epoch_ms(1_369_141_261), 1_369_141_261_000);
        assert_eq!(epoch_ms(1_369_141_261_500), 1_369_141_261_500);
        assert_eq!(epoch_ms(0xFFFF_FFFF), 0xFFFF_FFFF * 1000);
        assert_eq!(epoch_ms(0x1_0000_0000), 0x1_0000_0000);
    }

    #[test]
    fn keys_put_global_notes_first_then_each_series_in_time_order() {
        let global = note(None, 1_369_141_261, "").key();
        assert_eq!(global[..8], [0; 8]);
        assert_eq!(global[8..], keys::timestamp(1_369_141_261_000));
        let early = note(Some(1), 5, "").key();
        let late = note(Some(1), 1_369_141_261_500, "").key();
        let other = note(Some(2), 1, "").key();
        assert!(global < early && early < late && late < other);
    }

    #[test]
    fn records_round_trip_and_refuse_unknown_versions() {
        let mut n = note(Some(7), 1_369_141_261, "deploy");
        n.end_time = 1_369_141_300;
        n.notes = "v1.2".into();
        n.custom = Some(BTreeMap::from([("owner".into(), "jdoe".into())]));
        let value = encode(&n);
        assert_eq!(value[0], RECORD_VERSION);
        assert_eq!(
            &value[1..],
            br#"{"startTime":1369141261,"endTime":1369141300,"description":"deploy","notes":"v1.2","custom":{"owner":"jdoe"}}"#
        );
        assert_eq!(decode(&n.key(), &value).unwrap(), n);
        let global = note(None, 1, "");
        assert_eq!(
            decode(&global.key(), &encode(&global)).unwrap().series,
            None
        );
        let mut bad = value.clone();
        bad[0] = 2;
        assert!(decode(&n.key(), &bad).is_err());
    }

    #[test]
    fn ranges_are_inclusive_per_series_and_skip_other_ids() {
        let dir = tempfile::tempdir().unwrap();
        let notes = open(dir.path());
        // Seconds, except a2 (beyond 32 bits: ms).
        let written = vec![
            note(None, 1_000, "g1"),
            note(Some(1), 1_000, "a1"),
            note(Some(1), 10_000_000_000, "a2"),
            note(Some(1), 20_000_000, "a3"),
            note(Some(2), 2_000, "b1"),
            note(Some(5), 15_000_000, "e1"),
        ];
        notes.upsert(written, replace).unwrap();
        let descriptions = |found: Vec<Annotation>| -> Vec<String> {
            found.into_iter().map(|n| n.description).collect()
        };
        assert_eq!(
            descriptions(notes.range(Some(1), 1_000_000, 10_000_000_000).unwrap()),
            ["a1", "a2"]
        );
        assert_eq!(
            descriptions(notes.range(None, 0, i64::MAX).unwrap()),
            ["g1"]
        );
        assert_eq!(
            descriptions(
                notes
                    .of_series(&[1, 3, 4, 5], 10_000_000_000, 20_000_000_000)
                    .unwrap()
            ),
            ["a2", "a3", "e1"]
        );
        assert!(notes.of_series(&[6, 7], 0, i64::MAX).unwrap().is_empty());
        assert!(notes.range(Some(1), 5, 4).unwrap().is_empty());
        assert_eq!(
            notes
                .get(Some(1), 10_000_000_000)
                .unwrap()
                .unwrap()
                .description,
            "a2"
        );
        assert_eq!(notes.get(Some(1), 10_000_000_001).unwrap(), None);

        assert_eq!(notes.delete_range(Some(1), 0, 10_000_000_000).unwrap(), 2);
        assert_eq!(
            descriptions(notes.range(Some(1), 0, i64::MAX).unwrap()),
            ["a3"]
        );
        notes.delete(Some(2), 2_000_000).unwrap();
        notes.delete(Some(2), 2_000_000).unwrap();
        assert_eq!(notes.get(Some(2), 2_000_000).unwrap(), None);
    }

    #[test]
    fn upsert_merges_with_the_stored_note_and_earlier_ones_in_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let notes = open(dir.path());
        let keep_description = |stored: Annotation, given: Annotation| Annotation {
            description: stored.description,
            ..given
        };
        // The same instant in seconds, then in ms.
        notes
            .upsert(vec![note(None, 5_000_000, "first")], replace)
            .unwrap();
        let mut later = note(None, 5_000_000_000, "ignored");
        later.notes = "n".into();
        let out = notes
            .upsert(
                vec![later, note(None, 5_000_000, "also ignored")],
                keep_description,
            )
            .unwrap();
        assert_eq!(out[0].description, "first");
        assert_eq!(out[0].notes, "n");
        assert_eq!(out[1].description, "first");
        assert_eq!(notes.get(None, 5_000_000_000).unwrap().unwrap(), out[1]);
    }

    #[test]
    fn notes_survive_reopening_and_older_stores_gain_the_family() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path())
            .upsert(vec![note(Some(3), 42, "kept")], replace)
            .unwrap();
        assert_eq!(
            open(dir.path())
                .get(Some(3), 42_000)
                .unwrap()
                .unwrap()
                .description,
            "kept"
        );
        // A store written before the family existed.
        {
            let names =
                super::super::Db::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
            let db = super::super::Db::open_cf(&rocksdb::Options::default(), dir.path(), &names)
                .unwrap();
            db.drop_cf(cf::ANNOTATIONS).unwrap();
        }
        let notes = open(dir.path());
        assert_eq!(notes.get(Some(3), 42_000).unwrap(), None);
        notes.upsert(vec![note(None, 1, "new")], replace).unwrap();
        assert_eq!(notes.range(None, 0, i64::MAX).unwrap().len(), 1);
    }
}
