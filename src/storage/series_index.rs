//! The series index in memory: every series key by id, and posting lists
//! from each metric and each (tag key, tag value) to the ids carrying it.
//!
//! A query names a metric and filters on its tags; a lookup names tags.
//! Reading every series of the metric back from RocksDB and testing each
//! one costs a quarter of a second at a million series (`benches/
//! query_latency.py`). Here a filter is tested once per distinct value of
//! its tag key, values a literal or a prefix rules out are skipped in the
//! sorted value map, and only the ids of the values that pass are visited.
//!
//! The writer thread adds a series once the commit that created it has
//! succeeded, the same moment its points become readable; readers hold a
//! read lock only while they copy ids and keys out. The index is built at
//! open from the `series` family. Posting lists are sorted by id: ids are
//! handed out in increasing order, and the build at open sorts them.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::model::{SeriesKey, SeriesMeta};
use crate::query::source::TagSelect;

/// The wildcard of `/api/search/lookup` tag filters.
const ANY: &str = "*";

#[derive(Default)]
pub(super) struct SeriesIndex {
    /// The key of series `id` at index `id`; ids are dense from 1, so the
    /// few holes (id 0, ids of commits that failed) cost a null each.
    keys: Vec<Option<SeriesKey>>,
    metrics: foldhash::HashMap<Box<str>, Vec<u64>>,
    /// Tag key → tag value → ids; values sorted, so a prefix is a range.
    tags: foldhash::HashMap<Box<str>, BTreeMap<Box<str>, Vec<u64>>>,
}

impl SeriesIndex {
    /// The index of every `(key, id)`.
    pub(super) fn build<'a>(series: impl Iterator<Item = (&'a SeriesKey, u64)>) -> SeriesIndex {
        let mut index = SeriesIndex::default();
        for (key, id) in series {
            index.insert(id, key.clone());
        }
        for ids in index.metrics.values_mut() {
            ids.sort_unstable();
        }
        for values in index.tags.values_mut() {
            for ids in values.values_mut() {
                ids.sort_unstable();
            }
        }
        index
    }

    /// Adds series `id`. Called with increasing ids after the build, which
    /// keeps every posting list sorted.
    pub(super) fn insert(&mut self, id: u64, key: SeriesKey) {
        let Ok(slot) = usize::try_from(id) else {
            return;
        };
        if self.keys.len() <= slot {
            self.keys.resize(slot + 1, None);
        }
        push_id(&mut self.metrics, key.metric(), id);
        for (k, v) in key.tags() {
            let values = match self.tags.get_mut(k) {
                Some(values) => values,
                None => self.tags.entry(k.into()).or_default(),
            };
            match values.get_mut(v) {
                Some(ids) => ids.push(id),
                None => {
                    values.insert(v.into(), vec![id]);
                }
            }
        }
        self.keys[slot] = Some(key);
    }

    pub(super) fn has_metric(&self, metric: &str) -> bool {
        self.metrics.contains_key(metric)
    }

    pub(super) fn has_tag_key(&self, key: &str) -> bool {
        self.tags.contains_key(key)
    }

    pub(super) fn has_tag(&self, key: &str, value: &str) -> bool {
        self.tags
            .get(key)
            .is_some_and(|values| values.contains_key(value))
    }

    pub(super) fn meta(&self, id: u64) -> Option<SeriesMeta> {
        let key = self.keys.get(usize::try_from(id).ok()?)?.as_ref()?;
        Some(SeriesMeta {
            id,
            key: key.clone(),
        })
    }

    /// The ids of `metric`'s series, or of every series; ascending.
    pub(super) fn ids(&self, metric: Option<&str>) -> Vec<u64> {
        match metric {
            Some(m) => self.metrics.get(m).cloned().unwrap_or_default(),
            None => (0u64..)
                .zip(&self.keys)
                .filter_map(|(id, key)| key.as_ref().map(|_| id))
                .collect(),
        }
    }

    /// The series with these ids, in the order given; unknown ids left out.
    pub(super) fn series_by_ids(&self, ids: &[u64]) -> Vec<SeriesMeta> {
        ids.iter().filter_map(|&id| self.meta(id)).collect()
    }

    /// Every series of `metric`, by id; `None` if it has none.
    pub(super) fn series_of_metric(&self, metric: &str) -> Option<Vec<SeriesMeta>> {
        let ids = self.metrics.get(metric)?;
        Some(self.series_by_ids(ids))
    }

    /// The series of `metric` whose `select.key` tag has a value `select`
    /// accepts, by id; `None` if the metric has no series.
    pub(super) fn series_selected(
        &self,
        metric: &str,
        select: &TagSelect<'_>,
    ) -> Option<Vec<SeriesMeta>> {
        let of_metric = self.metrics.get(metric)?;
        let Some(values) = self.tags.get(select.key) else {
            return Some(Vec::new());
        };
        let mut ids = Vec::new();
        let mut take = |value: &str, posting: &[u64]| {
            if (select.matches)(value) {
                ids.extend_from_slice(posting);
            }
        };
        match select.exact {
            Some(exact) => {
                for value in exact {
                    if let Some(posting) = values.get(value.as_str()) {
                        take(value, posting);
                    }
                }
            }
            None => {
                let from = Bound::Included(select.prefix);
                for (value, posting) in values.range::<str, _>((from, Bound::Unbounded)) {
                    if !value.starts_with(select.prefix) {
                        break;
                    }
                    take(value, posting);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let ids = intersect(&ids, of_metric);
        Some(self.series_by_ids(&ids))
    }

    /// Series for `/api/search/lookup`: of `metric` (any metric when
    /// `None`) carrying, for every `(key, value)` filter, a tag matching it
    /// (`*` matches anything); at most `limit`, by id.
    pub(super) fn lookup(
        &self,
        metric: Option<&str>,
        filters: &[(String, String)],
        limit: usize,
    ) -> Vec<SeriesMeta> {
        let matches = |key: &SeriesKey| {
            metric.map_or(true, |m| key.metric() == m)
                && filters.iter().all(|(fk, fv)| {
                    key.tags()
                        .any(|(k, v)| (fk == ANY || fk == k) && (fv == ANY || fv == v))
                })
        };
        // Candidates from the narrowest posting list at hand: the first
        // filter naming a tag and a value, else the metric's, else the
        // first filter naming a tag key, else every series.
        let exact = filters
            .iter()
            .find(|(k, v)| k != ANY && v != ANY)
            .map(|(k, v)| {
                self.tags
                    .get(k.as_str())
                    .and_then(|values| values.get(v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            });
        let candidates: Vec<u64> = match (exact, metric) {
            (Some(ids), _) => ids.to_vec(),
            (None, Some(m)) => self.metrics.get(m).cloned().unwrap_or_default(),
            (None, None) => match filters.iter().find(|(k, _)| k != ANY) {
                Some((k, _)) => {
                    let mut ids: Vec<u64> = self
                        .tags
                        .get(k.as_str())
                        .into_iter()
                        .flat_map(|values| values.values().flatten().copied())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids
                }
                None => (0..self.keys.len() as u64).collect(),
            },
        };
        candidates
            .into_iter()
            .filter_map(|id| self.meta(id))
            .filter(|s| matches(&s.key))
            .take(limit)
            .collect()
    }
}

fn push_id(map: &mut foldhash::HashMap<Box<str>, Vec<u64>>, name: &str, id: u64) {
    match map.get_mut(name) {
        Some(ids) => ids.push(id),
        None => {
            map.insert(name.into(), vec![id]);
        }
    }
}

/// The ids in both sorted lists.
fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .copied()
        .filter(|id| large.binary_search(id).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(metric, tags.iter().copied())
    }

    fn ids(series: Option<Vec<SeriesMeta>>) -> Vec<u64> {
        series.unwrap().iter().map(|s| s.id).collect()
    }

    fn sample() -> SeriesIndex {
        let keys = [
            (key("cpu", &[("host", "web01"), ("dc", "lga")]), 3),
            (key("cpu", &[("host", "web02"), ("dc", "lga")]), 1),
            (key("cpu", &[("host", "db01"), ("dc", "sjc")]), 2),
            (key("mem", &[("host", "web01")]), 4),
            (key("cpu", &[("dc", "sjc")]), 5),
        ];
        let mut index = SeriesIndex::build(keys.iter().map(|(k, id)| (k, *id)).take(4));
        index.insert(5, keys[4].0.clone());
        index
    }

    #[test]
    fn selects_by_exact_values_prefix_and_test() {
        let index = sample();
        let all = |_: &str| true;
        let select = |exact, prefix, matches| TagSelect {
            key: "host",
            exact,
            prefix,
            matches,
        };
        let web = ["web01".to_string(), "web02".into(), "nope".into()];
        assert_eq!(
            ids(index.series_selected("cpu", &select(Some(&web), "", &all))),
            [1, 3]
        );
        assert_eq!(
            ids(index.series_selected("cpu", &select(None, "web", &all))),
            [1, 3]
        );
        let ends_in_1 = |v: &str| v.ends_with('1');
        assert_eq!(
            ids(index.series_selected("cpu", &select(None, "", &ends_in_1))),
            [2, 3]
        );
        assert_eq!(
            ids(index.series_selected("mem", &select(None, "", &all))),
            [4]
        );
        let no_key = TagSelect {
            key: "rack",
            ..select(None, "", &all)
        };
        assert_eq!(
            ids(index.series_selected("cpu", &no_key)),
            Vec::<u64>::new()
        );
        assert!(index.series_selected("disk", &no_key).is_none());
    }

    #[test]
    fn lookups_take_the_narrowest_list() {
        let index = sample();
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let found = |m, filters: &[(String, String)], limit| -> Vec<u64> {
            index
                .lookup(m, filters, limit)
                .iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(found(Some("cpu"), &[], 10), [1, 2, 3, 5]);
        assert_eq!(found(Some("cpu"), &[f("host", "web01")], 10), [3]);
        assert_eq!(found(None, &[f("host", "web01")], 10), [3, 4]);
        assert_eq!(found(None, &[f("host", "*")], 10), [1, 2, 3, 4]);
        assert_eq!(found(None, &[f("*", "sjc")], 10), [2, 5]);
        assert_eq!(found(None, &[], 2), [1, 2]);
        assert_eq!(
            found(Some("cpu"), &[f("dc", "lga"), f("host", "*")], 1),
            [1]
        );
        assert_eq!(
            found(Some("cpu"), &[f("host", "web09")], 10),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn keys_by_id_and_by_metric() {
        let index = sample();
        let metas = index.series_by_ids(&[4, 99, 2]);
        assert_eq!(metas.len(), 2);
        assert_eq!(metas[0].key, key("mem", &[("host", "web01")]));
        assert_eq!(ids(index.series_of_metric("cpu")), [1, 2, 3, 5]);
        assert!(index.series_of_metric("disk").is_none());
    }
}
