//! Beyond one device: replicas in one process and shards across processes.
//!
//! * **Replicas** ([`Replicas`], and the trainer's data parallelism): one copy of the model per
//!   device of `--devices LIST`; every batch is split into contiguous [`shares`], each replica
//!   runs its share on its own thread, and the results are put back in input order. For
//!   training, each replica's gradients are moved to the main device and summed there, the
//!   optimizer steps once, and the next step forks the updated weights to the replicas again
//!   (burn-train's multi-device pattern; burn 0.22 has no all-reduce outside CUDA).
//!   `--devices cpu,cpu` (two replicas on one device) is how tests and CI exercise it.
//! * **Shards** ([`Shard`]): `--shard i/N` runs the i-th of N contiguous slices of a file's rows,
//!   anywhere (a cluster's jobs, several machines); `gram merge` puts the slices' outputs back
//!   together into the file and report one process would have written ([`crate::merge`]).
//!   Slices are made of whole [`blocks`] — the rows one call to the judge takes — so every
//!   slice makes exactly the calls the one-process run makes for those rows, and its scores are
//!   the same bits (the judge shares work, such as common prefixes, within a call).

use crate::{Error, Judge, Pair, Result, Verdict};
use std::ops::Range;

/// Split `n` items into `parts` contiguous shares, as even as whole `unit`s allow (a unit —
/// a pair's two orders — never straddles two shares; a trailing partial unit goes to the last
/// share). Earlier shares get the extra units. Shares may be empty when there are fewer units
/// than parts.
pub fn shares(n: usize, parts: usize, unit: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let unit = unit.max(1);
    let units = n.div_ceil(unit);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 0..parts {
        let take = units / parts + usize::from(part < units % parts);
        let end = (start + take * unit).min(n);
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// Consecutive runs of items, each closed once its `sizes` add up to at least `min` (the last
/// may be smaller): how rows are grouped into calls to the judge (`sizes`: pairs per row).
pub fn blocks(sizes: impl IntoIterator<Item = usize>, min: usize) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let (mut start, mut sum, mut n) = (0, 0, 0);
    for size in sizes {
        n += 1;
        sum += size;
        if sum >= min.max(1) {
            blocks.push(start..n);
            (start, sum) = (n, 0);
        }
    }
    if start < n {
        blocks.push(start..n);
    }
    blocks
}

/// One of `count` contiguous slices of a file's rows: `--shard index/count`, `index` counted
/// from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// This slice's rows, given the [`blocks`] of all rows: the rows of blocks
    /// `[index·b/count, (index+1)·b/count)` of `b` blocks (empty when there are fewer blocks
    /// than slices).
    pub fn rows(&self, blocks: &[Range<usize>]) -> Range<usize> {
        let total = blocks.last().map_or(0, |b| b.end);
        let mine = shares(blocks.len(), self.count, 1)[self.index].clone();
        let at = |block: usize| blocks.get(block).map_or(total, |b| b.start);
        at(mine.start)..at(mine.end)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `i/N` with `0 ≤ i < N`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let parse = |part: &str| part.trim().parse::<usize>().ok();
        let Some((index, count)) = text.split_once('/') else {
            return Err(format!("`{text}`: expected i/N, e.g. 0/4"));
        };
        match (parse(index), parse(count)) {
            (Some(index), Some(count)) if index < count => Ok(Shard { index, count }),
            (Some(_), Some(_)) => Err(format!(
                "`{text}`: the shard index counts from 0 and must be below the shard count"
            )),
            _ => Err(format!(
                "`{text}`: expected i/N with whole numbers, e.g. 0/4"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Judges on several devices acting as one: each call's pairs are split into contiguous shares,
/// judged concurrently (one thread per replica), and the verdicts returned in input order. The
/// verdicts equal one judge's (each pair is judged whole by one replica).
pub struct Replicas<J> {
    judges: Vec<J>,
}

impl<J: Judge + Send> Replicas<J> {
    /// At least one judge; the first is the main one.
    pub fn new(judges: Vec<J>) -> Result<Self> {
        if judges.is_empty() {
            return Err(Error::invalid("no devices to judge on"));
        }
        Ok(Replicas { judges })
    }

    /// The replicas, the main one first.
    pub fn judges(&self) -> &[J] {
        &self.judges
    }
}

impl<J: Judge + Send> Judge for Replicas<J> {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        if let [only] = self.judges.as_mut_slice() {
            return only.judge(pairs);
        }
        let ranges = shares(pairs.len(), self.judges.len(), 1);
        let results: Vec<Result<Vec<Verdict>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (self.judges.iter_mut())
                .zip(ranges)
                .map(|(judge, range)| scope.spawn(move || judge.judge(&pairs[range])))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(Error::invalid("a judge replica panicked")))
                })
                .collect()
        });
        let mut verdicts = Vec::with_capacity(pairs.len());
        for result in results {
            verdicts.extend(result?);
        }
        Ok(verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_in_order_and_keep_units_whole() {
        assert_eq!(shares(10, 3, 1), vec![0..4, 4..7, 7..10]);
        assert_eq!(shares(8, 2, 2), vec![0..4, 4..8]);
        assert_eq!(shares(6, 2, 2), vec![0..4, 4..6]);
        assert_eq!(shares(2, 3, 2), vec![0..2, 2..2, 2..2]);
        assert_eq!(shares(5, 2, 2), vec![0..4, 4..5]);
        for n in 0..40 {
            for parts in 1..6 {
                for unit in 1..4 {
                    let ranges = shares(n, parts, unit);
                    assert_eq!(ranges.len(), parts);
                    assert_eq!(ranges[0].start, 0);
                    assert_eq!(ranges[parts - 1].end, n);
                    for pair in ranges.windows(2) {
                        assert_eq!(pair[0].end, pair[1].start);
                        assert!(pair[0].len() >= pair[1].len() || pair[1].end == n);
                    }
                    // Only the share holding the last item may end inside a unit.
                    for range in ranges.iter().filter(|r| r.end < n) {
                        assert_eq!(range.start % unit, 0);
                        assert_eq!(range.len() % unit, 0);
                    }
                }
            }
        }
    }

    #[test]
    fn blocks_close_at_the_minimum() {
        assert_eq!(blocks([1; 7], 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(blocks([9, 1, 1, 9, 2], 4), vec![0..1, 1..4, 4..5]);
        assert_eq!(blocks([0; 0], 4), Vec::<Range<usize>>::new());
        assert_eq!(blocks([2, 2], 0), vec![0..1, 1..2]);
    }

    #[test]
    fn shard_parses_and_slices_whole_blocks() {
        let shard: Shard = "1/3".parse().unwrap();
        assert_eq!(shard, Shard { index: 1, count: 3 });
        let rows = blocks([1; 10], 1);
        assert_eq!(shard.rows(&rows), 4..7);
        let calls = blocks([1; 10], 3); // 0..3, 3..6, 6..9, 9..10
        assert_eq!(shard.rows(&calls), 6..9);
        assert_eq!(Shard { index: 0, count: 3 }.rows(&calls), 0..6);
        assert_eq!(Shard { index: 2, count: 3 }.rows(&calls), 9..10);
        assert_eq!(Shard { index: 3, count: 5 }.rows(&calls[..2]), 6..6);
        assert_eq!(shard.to_string(), "1/3");
        for bad in ["3/3", "1", "a/2", "1/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    /// A judge whose verdict reads the pair's prompt as p_a, so order mistakes show.
    struct Echo(usize);

    impl Judge for Echo {
        fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
            self.0 += pairs.len();
            Ok(pairs
                .iter()
                .map(|p| {
                    let x: f64 = p.prompt.parse().unwrap();
                    Verdict {
                        p_a: x,
                        p_a_forward: x,
                        p_a_reverse: x,
                    }
                })
                .collect())
        }
    }

    #[test]
    fn replicas_keep_input_order_and_share_the_work() {
        let mut replicas = Replicas::new(vec![Echo(0), Echo(0), Echo(0)]).unwrap();
        let pairs: Vec<Pair> = (0..7)
            .map(|i| Pair::new(format!("{i}"), "a", "b"))
            .collect();
        let verdicts = replicas.judge(&pairs).unwrap();
        let order: Vec<f64> = verdicts.iter().map(|v| v.p_a).collect();
        assert_eq!(order, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let counts: Vec<usize> = replicas.judges().iter().map(|j| j.0).collect();
        assert_eq!(counts, vec![3, 2, 2]);
        assert!(Replicas::<Echo>::new(Vec::new()).is_err());
    }
}
