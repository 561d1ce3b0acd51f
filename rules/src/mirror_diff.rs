//! The decisions of `diff_mirror` (issue 33): which key ranges of a mirror differ from its
//! source. Both sides summarise a bucket of keys (a row count and a checksum of the rows'
//! hashes, computed where the data is); a bucket whose summaries differ is split again until
//! it holds few enough rows to fetch the keys and hashes of, and those are compared one by one
//! into tight ranges: the first and last differing key, with nothing equal in between.

/// What both sides say about one bucket of keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: i64,
    /// The sum (wrapping) of the rows' 64-bit hashes: order does not matter, and a changed
    /// row changes it.
    pub checksum: u64,
}

/// What to do with a bucket once both sides summarised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The same rows on both sides (as far as the checksum can tell).
    Equal,
    /// Too many rows to fetch: split it and summarise the parts.
    Split,
    /// Few enough rows: fetch both sides' keys and hashes and compare them (`exact_diff`).
    Fetch,
}

/// `Split` while the bucket holds more than `max_rows` rows on either side.
pub fn next_step(source: Summary, target: Summary, max_rows: i64) -> Step {
    if source == target {
        Step::Equal
    } else if source.rows.max(target.rows) > max_rows {
        Step::Split
    } else {
        Step::Fetch
    }
}

/// How a range differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Rows of the source the target lacks.
    Missing,
    /// Rows of the target the source does not have.
    Extra,
    /// Rows on both sides whose mirrored columns differ.
    Changed,
    /// More than one of those.
    Mixed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Extra => "extra",
            Kind::Changed => "changed",
            Kind::Mixed => "mixed",
        }
    }
}

/// One differing key range: from its first differing key to its last, inclusive, with no key
/// equal on both sides in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRange<K> {
    pub key_from: K,
    pub key_to: K,
    /// Rows in the range on each side.
    pub source_rows: i64,
    pub target_rows: i64,
    pub missing: i64,
    pub extra: i64,
    pub changed: i64,
    /// The range starts at the first key of the fetched bucket (and may continue the
    /// previous bucket's last range) or ends at its last.
    pub at_start: bool,
    pub at_end: bool,
}

impl<K> DiffRange<K> {
    pub fn kind(&self) -> Kind {
        match (self.missing > 0, self.extra > 0, self.changed > 0) {
            (true, false, false) => Kind::Missing,
            (false, true, false) => Kind::Extra,
            (false, false, true) => Kind::Changed,
            _ => Kind::Mixed,
        }
    }
}

/// The differing ranges of one fetched bucket: `source` and `target` are its (key, hash)
/// pairs, each sorted by key with no key twice (a target read with `FINAL` and its soft
/// deletes filtered out).
pub fn exact_diff<K: Ord + Clone>(source: &[(K, u64)], target: &[(K, u64)]) -> Vec<DiffRange<K>> {
    let mut ranges: Vec<DiffRange<K>> = Vec::new();
    let mut open: Option<DiffRange<K>> = None;
    let (mut i, mut j) = (0, 0);
    let mut first = true;
    while i < source.len() || j < target.len() {
        let order = match (source.get(i), target.get(j)) {
            (Some(s), Some(t)) => s.0.cmp(&t.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        // (key, in source, in target, differs)
        let (key, in_s, in_t, differs) = match order {
            std::cmp::Ordering::Less => (&source[i].0, true, false, true),
            std::cmp::Ordering::Greater => (&target[j].0, false, true, true),
            std::cmp::Ordering::Equal => (&source[i].0, true, true, source[i].1 != target[j].1),
        };
        if differs {
            let r = open.get_or_insert_with(|| DiffRange {
                key_from: key.clone(),
                key_to: key.clone(),
                source_rows: 0,
                target_rows: 0,
                missing: 0,
                extra: 0,
                changed: 0,
                at_start: first,
                at_end: false,
            });
            r.key_to = key.clone();
            r.source_rows += i64::from(in_s);
            r.target_rows += i64::from(in_t);
            match (in_s, in_t) {
                (true, false) => r.missing += 1,
                (false, true) => r.extra += 1,
                _ => r.changed += 1,
            }
        } else if let Some(r) = open.take() {
            ranges.push(r);
        }
        i += usize::from(in_s);
        j += usize::from(in_t);
        first = false;
    }
    if let Some(mut r) = open {
        r.at_end = true;
        ranges.push(r);
    }
    ranges
}

/// Joins the ranges of consecutive buckets (in key order) where one bucket's last range runs
/// to its end and the next bucket's first starts at its beginning: nothing equal lies between.
pub fn join_buckets<K: Clone>(buckets: Vec<Vec<DiffRange<K>>>) -> Vec<DiffRange<K>> {
    let mut out: Vec<DiffRange<K>> = Vec::new();
    let mut last_ran_to_end = false;
    for bucket in buckets {
        let mut ranges = bucket.into_iter();
        match (ranges.next(), out.last_mut()) {
            (Some(first), Some(prev)) if last_ran_to_end && first.at_start => {
                prev.key_to = first.key_to;
                prev.source_rows += first.source_rows;
                prev.target_rows += first.target_rows;
                prev.missing += first.missing;
                prev.extra += first.extra;
                prev.changed += first.changed;
                prev.at_end = first.at_end;
            }
            (Some(first), _) => out.push(first),
            (None, _) => {
                // An equal bucket (or an empty one) between: nothing joins across it.
                last_ran_to_end = false;
                continue;
            }
        }
        out.extend(ranges);
        last_ran_to_end = out.last().is_some_and(|r| r.at_end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(keys: impl IntoIterator<Item = i64>) -> Vec<(i64, u64)> {
        keys.into_iter().map(|k| (k, k as u64 * 7)).collect()
    }

    #[test]
    fn equal_summaries_are_equal_and_large_buckets_split() {
        let s = Summary {
            rows: 1000,
            checksum: 5,
        };
        assert_eq!(next_step(s, s, 100), Step::Equal);
        let t = Summary { rows: 999, ..s };
        assert_eq!(next_step(s, t, 100), Step::Split);
        assert_eq!(next_step(s, t, 1000), Step::Fetch);
        let changed = Summary { checksum: 6, ..s };
        assert_eq!(
            next_step(s, changed, 5000),
            Step::Fetch,
            "same count, other rows"
        );
    }

    #[test]
    fn missing_ranges_come_back_tight() {
        let source = rows(1..=100);
        let target = rows((1..=100).filter(|k| !(10..=19).contains(k) && *k != 50 && *k != 51));
        let d = exact_diff(&source, &target);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].key_from, d[0].key_to, d[0].missing), (10, 19, 10));
        assert_eq!((d[0].source_rows, d[0].target_rows), (10, 0));
        assert_eq!(
            (d[1].key_from, d[1].key_to, d[1].kind()),
            (50, 51, Kind::Missing)
        );
        assert!(!d[0].at_start && !d[1].at_end);
    }

    #[test]
    fn changed_and_extra_rows_and_mixed_ranges() {
        let source = rows(1..=10);
        let mut target = rows(1..=10);
        target[4].1 += 1; // key 5 changed
        target.push((11, 1)); // an extra row past the source's end
        let d = exact_diff(&source, &target);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].key_from, d[0].key_to, d[0].kind()),
            (5, 5, Kind::Changed)
        );
        assert_eq!((d[0].source_rows, d[0].target_rows), (1, 1));
        assert_eq!(
            (d[1].key_from, d[1].kind(), d[1].at_end),
            (11, Kind::Extra, true)
        );
        // A run with a missing and a changed row next to each other is one mixed range.
        let source = rows(1..=5);
        let mut target = rows([1, 2, 4, 5]);
        target[2].1 = 0; // key 4 changed, key 3 missing
        let d = exact_diff(&source, &target);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].key_from, d[0].key_to, d[0].kind()),
            (3, 4, Kind::Mixed)
        );
    }

    #[test]
    fn an_equal_bucket_has_no_range() {
        assert!(exact_diff(&rows(1..=50), &rows(1..=50)).is_empty());
        assert!(exact_diff::<i64>(&[], &[]).is_empty());
    }

    #[test]
    fn ranges_running_across_buckets_are_joined() {
        // Keys 1..=300 in three buckets; the target lacks 95..=205, across all three.
        let all = rows(1..=300);
        let lacking: Vec<(i64, u64)> = all
            .iter()
            .copied()
            .filter(|(k, _)| !(95..=205).contains(k))
            .collect();
        let bucket = |lo: i64, hi: i64| {
            let s: Vec<_> = all
                .iter()
                .copied()
                .filter(|(k, _)| (lo..=hi).contains(k))
                .collect();
            let t: Vec<_> = lacking
                .iter()
                .copied()
                .filter(|(k, _)| (lo..=hi).contains(k))
                .collect();
            exact_diff(&s, &t)
        };
        let joined = join_buckets(vec![bucket(1, 100), bucket(101, 200), bucket(201, 300)]);
        assert_eq!(joined.len(), 1, "{joined:?}");
        let r = &joined[0];
        assert_eq!(
            (r.key_from, r.key_to, r.missing, r.source_rows),
            (95, 205, 111, 111)
        );
    }

    #[test]
    fn an_equal_bucket_between_keeps_ranges_apart() {
        let a = exact_diff(&rows(1..=10), &rows(1..=8)); // 9..=10 missing, at the end
        let equal: Vec<DiffRange<i64>> = Vec::new();
        let c = exact_diff(&rows(21..=30), &rows(23..=30)); // 21..=22 missing, at the start
        let joined = join_buckets(vec![a.clone(), equal, c.clone()]);
        assert_eq!(joined.len(), 2);
        let joined = join_buckets(vec![a, c]);
        assert_eq!(joined.len(), 1, "adjacent buckets: nothing equal between");
        assert_eq!((joined[0].key_from, joined[0].key_to), (9, 22));
    }
}
