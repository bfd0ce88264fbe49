//! `/api/metadata/put`: scollector posts metric metadata here an hour
//! apart (`[{"Metric","Tagset","Name","Value","Time"}]`: descriptions,
//! units, rate types). OpenTSDB itself has no such endpoint (Bosun does),
//! and other servers answer 204 and drop it; scollector only needs the
//! 204.
//!
//! rtsd keeps it, because descriptions and units are worth having: the
//! latest entry per (`Metric`, `Tagset`, `Name`) lives in memory and in
//! `metadata.json` in the data directory (pretty-printed, sorted, rewritten
//! atomically after each post), so an operator can read it and it survives
//! restarts. The store has no column family for it; it is small (one entry
//! per metric and attribute) and capped at [`MAX_ENTRIES`].
//!
//! On the ClickHouse store the entries taken also go to its `metadata`
//! table (`Backend::share_metadata`), so the posts of every node are in
//! one place; each node's file holds what it was sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::Value;

use super::{allow, blocking, body, ApiError, AppState};
use crate::backend::MetadataEntry;

/// Entries kept at most; new keys beyond it are ignored (and logged).
pub const MAX_ENTRIES: usize = 100_000;

/// The file under the data directory.
const FILE_NAME: &str = "metadata.json";

/// Metadata entries by key, mirrored to a JSON file.
pub struct MetadataStore {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Value>>,
}

impl MetadataStore {
    /// Loads `metadata.json` from `data_dir`; a missing file starts empty,
    /// an unreadable one too, with a warning (it is rewritten on the next
    /// post).
    pub fn open(data_dir: &Path) -> MetadataStore {
        let path = data_dir.join(FILE_NAME);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable metadata file");
                BTreeMap::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read metadata file");
                BTreeMap::new()
            }
        };
        MetadataStore {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// Every entry, by key.
    pub fn entries(&self) -> BTreeMap<String, Value> {
        self.entries.lock().clone()
    }

    /// Merges posted entries (objects; anything else is skipped) and
    /// rewrites the file. Returns the entries taken.
    pub fn merge(&self, posted: Vec<Value>) -> std::io::Result<Vec<MetadataEntry>> {
        let snapshot = {
            let mut entries = self.entries.lock();
            let mut taken = Vec::new();
            for item in posted {
                let Value::Object(fields) = &item else {
                    continue;
                };
                let part = |name: &str| match fields.get(name) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                let entry = MetadataEntry {
                    metric: part("Metric"),
                    tagset: part("Tagset"),
                    name: part("Name"),
                    json: item.to_string(),
                };
                let key = format!("{}\u{0}{}\u{0}{}", entry.metric, entry.tagset, entry.name);
                if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
                    tracing::warn!(
                        max = MAX_ENTRIES,
                        "metadata store full; ignoring new entries"
                    );
                    continue;
                }
                entries.insert(key, item);
                taken.push(entry);
            }
            if taken.is_empty() {
                return Ok(taken);
            }
            (taken, serde_json::to_vec_pretty(&*entries)?)
        };
        let (taken, bytes) = snapshot;
        // Write beside, then rename: a crash leaves the old file or the new.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(taken)
    }
}

pub async fn put(
    method: Method,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::POST, Method::PUT])?;
    let bytes = body::read(&headers, request_body, state.http.max_body_bytes).await?;
    let posted = match body::json::<Value>(&bytes)? {
        Value::Array(items) => items,
        one => vec![one],
    };
    blocking(move || {
        let taken = state.metadata.merge(posted).map_err(|e| {
            ApiError::internal("Unable to store the metadata").with_details(e.to_string())
        })?;
        state.store.share_metadata(&taken).map_err(|e| {
            ApiError::internal("Unable to share the metadata").with_details(e.to_string())
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn latest_entry_per_key_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path());
        let first = json!({"Metric":"os.cpu","Tagset":"","Name":"unit","Value":"percent"});
        let second = json!({"Metric":"os.cpu","Tagset":"","Name":"unit","Value":"CPU%"});
        let desc = json!({"Metric":"os.cpu","Name":"desc","Value":"CPU time"});
        assert_eq!(
            store
                .merge(vec![first, json!(42), desc.clone()])
                .unwrap()
                .len(),
            2
        );
        assert_eq!(store.merge(vec![second.clone()]).unwrap().len(), 1);
        let reopened = MetadataStore::open(dir.path()).entries();
        assert_eq!(
            reopened.values().cloned().collect::<Vec<_>>(),
            vec![desc, second]
        );
    }

    #[test]
    fn an_unreadable_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not json").unwrap();
        assert!(MetadataStore::open(dir.path()).entries().is_empty());
    }
}
