//! The iteration order of a Java `HashMap<String, String>`, so replies that
//! embed OpenTSDB's tag map (`tags={host=web01, dc=lga}`) come out byte for
//! byte as OpenTSDB writes them, and so an illegal character is reported on
//! the tag OpenTSDB would check first.
//!
//! A `HashMap` iterates its buckets in ascending index order and, within a
//! bucket, its entries in insertion order (a resize splits buckets without
//! reordering them). The bucket of a key is `(h ^ (h >>> 16)) & (cap - 1)`
//! with `h = String.hashCode()`. The capacity starts at 16 and doubles when
//! the size exceeds 3/4 of it, or when a bucket grows past 8 entries while
//! the capacity is below 64. Bins that Java turns into red-black trees
//! (9+ colliding keys at capacity 64 or more) are not emulated; no real tag
//! set gets there.

/// Java's `String.hashCode()` over the UTF-16 units of `s`.
pub fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The insertion indices of `keys` (all distinct) in the order a Java
/// `HashMap` built by inserting them in that order iterates them.
pub fn iteration_order<S: AsRef<str>>(keys: &[S]) -> Vec<usize> {
    let hashes: Vec<u32> = keys
        .iter()
        .map(|k| {
            let h = string_hash(k.as_ref()) as u32;
            h ^ (h >> 16)
        })
        .collect();
    let capacity = final_capacity(&hashes);
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Stable: keys in the same bucket keep their insertion order.
    order.sort_by_key(|&i| hashes[i] as usize & (capacity - 1));
    order
}

/// `AbstractMap.toString()` of the `HashMap` built by inserting `entries`
/// in order (distinct keys): `{k1=v1, k2=v2}` in iteration order, as
/// OpenTSDB embeds tag maps in its messages.
pub fn java_map_string<K: AsRef<str>, V: AsRef<str>>(entries: &[(K, V)]) -> String {
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).collect();
    let mut out = String::from("{");
    for (n, i) in iteration_order(&keys).into_iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let (k, v) = &entries[i];
        out.push_str(k.as_ref());
        out.push('=');
        out.push_str(v.as_ref());
    }
    out.push('}');
    out
}

/// Replays the inserts to find the table size the map ends with.
fn final_capacity(spread_hashes: &[u32]) -> usize {
    const TREEIFY_THRESHOLD: usize = 8;
    const MIN_TREEIFY_CAPACITY: usize = 64;
    let mut capacity = 16;
    let mut bucket_sizes = vec![0usize; capacity];
    for (inserted, &h) in spread_hashes.iter().enumerate() {
        let bucket = h as usize & (capacity - 1);
        bucket_sizes[bucket] += 1;
        let size = inserted + 1;
        let crowded = bucket_sizes[bucket] > TREEIFY_THRESHOLD && capacity < MIN_TREEIFY_CAPACITY;
        // A crowded bucket resizes first; the size check then uses the new
        // threshold.
        if crowded {
            capacity *= 2;
        }
        if size > capacity / 4 * 3 {
            capacity *= 2;
        }
        if bucket_sizes.len() != capacity {
            bucket_sizes = vec![0; capacity];
            for &h in &spread_hashes[..size] {
                bucket_sizes[h as usize & (capacity - 1)] += 1;
            }
        }
    }
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> String {
        java_map_string(pairs)
    }

    fn ordered(keys: &[String]) -> Vec<&str> {
        iteration_order(keys)
            .into_iter()
            .map(|i| keys[i].as_str())
            .collect()
    }

    #[test]
    fn string_hash_matches_java() {
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("hello"), 99_162_322);
        assert_eq!(string_hash("host"), 3_208_616);
        assert_eq!(string_hash("polygenelubricants"), i32::MIN);
        // UTF-16 units, not bytes or chars: U+1F600 is two units.
        assert_eq!(string_hash("é"), 0xE9);
        assert_eq!(string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn small_maps_follow_bucket_order() {
        assert_eq!(map(&[]), "{}");
        assert_eq!(
            map(&[("dc", "lga"), ("host", "web01")]),
            "{host=web01, dc=lga}"
        );
        assert_eq!(
            map(&[("host", "web01"), ("cpu", "0")]),
            "{host=web01, cpu=0}"
        );
        // Single letters hash to themselves: alphabetical.
        assert_eq!(
            map(&[("c", "3"), ("a", "1"), ("b", "2")]),
            "{a=1, b=2, c=3}"
        );
        // "a" (97) and "q" (113) share bucket 1 of 16: insertion order.
        assert_eq!(map(&[("q", "2"), ("a", "1")]), "{q=2, a=1}");
        assert_eq!(map(&[("a", "1"), ("q", "2")]), "{a=1, q=2}");
    }

    #[test]
    fn map_text_keeps_names_as_they_are() {
        assert_eq!(map(&[("b", "2"), ("a", "1")]), "{a=1, b=2}");
        assert_eq!(map(&[]), "{}");
        assert_eq!(map(&[("a b", "1")]), "{a b=1}");
    }

    #[test]
    fn thirteen_entries_resize_to_32_buckets() {
        // With 16 buckets "q" would share bucket 1 with "a" and, inserted
        // first, precede it; at 14 keys the table has 32 buckets and "q"
        // (bucket 17) follows "a".."m" (buckets 1..=13).
        let keys: Vec<String> = ['q']
            .into_iter()
            .chain(('a'..='m').rev())
            .map(String::from)
            .collect();
        let mut want: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| *k != "q")
            .collect();
        want.sort_unstable();
        want.push("q");
        assert_eq!(ordered(&keys), want);
    }

    #[test]
    fn crowded_bucket_resizes_below_64() {
        // Nine keys in bucket 0 of 16 (hashes are multiples of 16 below
        // 2^16, so spreading changes nothing) force a resize to 32, which
        // moves the odd multiples (0x110, 0x130, ...) to bucket 16.
        let keys: Vec<String> = (1..=9u32)
            .filter_map(|i| char::from_u32(0x100 + 16 * i))
            .map(String::from)
            .collect();
        let hashes: Vec<u32> = keys.iter().map(|k| string_hash(k) as u32).collect();
        assert_eq!(final_capacity(&hashes), 32);
        assert_eq!(
            ordered(&keys),
            [
                "\u{120}", "\u{140}", "\u{160}", "\u{180}", "\u{110}", "\u{130}", "\u{150}",
                "\u{170}", "\u{190}"
            ]
        );
    }
}
