//! Where each character of a decoded line came from, kept as runs.
//!
//! The characters of a receipt line come in stretches of equal byte width — a
//! stretch of ASCII, of two-byte GB18030 characters — so their stream offsets
//! form a few arithmetic progressions. [`Offsets`] keeps one [`Run`] (first
//! offset, step, count) per progression instead of one `u64` per character,
//! and keeps up to [`INLINE`] runs without a heap allocation. A 30-character
//! line used to cost a 240-byte vector allocated, filled and freed per line;
//! most lines now fit inline (measured in docs/BENCHMARKS.md).
//!
//! # Invariants
//!
//! - **Canonical runs.** Every `Offsets` is built by [`Runs`], whose bulk
//!   append [`Runs::push_many`] gives the same runs as appending one character
//!   at a time (a property test checks it), by this rule: a
//!   character extends the last run when its offset continues that run's
//!   progression — a run's second character fixes its step — and starts a new
//!   run otherwise. The same offset sequence therefore always has the same
//!   runs, whichever decoding path (bulk or byte at a time) produced it, and
//!   comparing runs is comparing the offsets.
//! - A step is never negative (a smaller offset starts a new run) and a run's
//!   count never 0, so [`Offsets::iter`] yields exactly the pushed sequence.

use std::fmt;

/// Runs held without a heap allocation: 65 of the 78 lines of
/// tests/fixtures/receipts/market.bin have at most two (a third inline run
/// would make every line event 8 bytes bigger for one more line in 78).
pub const INLINE: usize = 2;

/// `count` characters at `start`, `start + step`, `start + 2 × step`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Run {
    pub start: u64,
    /// 0 while the run has one character (and for characters sharing a byte
    /// sequence, as when one Big5 sequence decodes to two characters).
    pub step: u32,
    pub count: u32,
}

impl Run {
    fn at(&self, k: u32) -> u64 {
        self.start + k as u64 * self.step as u64
    }
}

/// Per character of a line, the stream offset of its first byte.
#[derive(Clone)]
pub struct Offsets(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, runs: [Run; INLINE] },
    Heap(Box<[Run]>),
}

impl Default for Offsets {
    fn default() -> Self {
        Offsets(Repr::Inline {
            len: 0,
            runs: [Run::default(); INLINE],
        })
    }
}

impl Offsets {
    fn from_runs(runs: &[Run]) -> Offsets {
        if runs.len() <= INLINE {
            let mut inline = [Run::default(); INLINE];
            inline[..runs.len()].copy_from_slice(runs);
            Offsets(Repr::Inline {
                len: runs.len() as u8,
                runs: inline,
            })
        } else {
            Offsets(Repr::Heap(runs.into()))
        }
    }

    /// The runs, in order.
    pub fn runs(&self) -> &[Run] {
        match &self.0 {
            Repr::Inline { len, runs } => &runs[..*len as usize],
            Repr::Heap(runs) => runs,
        }
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.runs().iter().map(|r| r.count as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs().is_empty()
    }

    /// Offset of character `j` (a walk over the runs; use [`Offsets::iter`]
    /// to visit every character).
    pub fn get(&self, mut j: usize) -> Option<u64> {
        for r in self.runs() {
            if j < r.count as usize {
                return Some(r.at(j as u32));
            }
            j -= r.count as usize;
        }
        None
    }

    /// Offset of the last character.
    pub fn last(&self) -> Option<u64> {
        self.runs().last().map(|r| r.at(r.count - 1))
    }

    /// Every character's offset, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs()
            .iter()
            .flat_map(|r| (0..r.count).map(move |k| r.at(k)))
    }
}

impl PartialEq for Offsets {
    fn eq(&self, other: &Self) -> bool {
        // Canonical runs: equal runs exactly when equal offsets.
        self.runs() == other.runs()
    }
}

impl fmt::Debug for Offsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.runs()).finish()
    }
}

impl FromIterator<u64> for Offsets {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut runs = Runs::default();
        for o in iter {
            runs.push(o);
        }
        runs.take()
    }
}

/// The growing runs of the line being decoded; its buffer is reused from line
/// to line.
#[derive(Debug, Default)]
pub(super) struct Runs {
    runs: Vec<Run>,
}

/// A state of [`Runs`] to return to (see [`Runs::restore`]).
pub(super) struct Mark {
    len: usize,
    last: Option<Run>,
}

impl Runs {
    /// Appends one character at `off`.
    #[inline]
    pub(super) fn push(&mut self, off: u64) {
        self.push_many(off, 1, 0);
    }

    /// Appends `count` characters at `start`, `start + step`, …: the same runs
    /// as `count` single pushes would give (the canonical rule of the module
    /// documentation), in constant time.
    #[inline]
    pub(super) fn push_many(&mut self, start: u64, count: usize, step: u32) {
        if count == 0 {
            return;
        }
        // Counts no line reaches (MAX_LINE_CHARS is 4096) keep every sum
        // below u32::MAX; anything larger goes one character at a time.
        const BIG: usize = 1 << 30;
        let rest = (count - 1) as u32;
        if let Some(r) = self.runs.last_mut() {
            if count >= BIG || r.count as usize >= BIG {
                self.push_slowly(start, count, step);
                return;
            }
            // Does `start` continue the last run?
            let continues = if r.count == 1 {
                match start.checked_sub(r.start).map(u32::try_from) {
                    Some(Ok(d)) => {
                        r.step = d;
                        true
                    }
                    _ => false,
                }
            } else {
                r.start.checked_add(r.count as u64 * r.step as u64) == Some(start)
            };
            if continues {
                r.count += 1;
                if rest == 0 {
                    return;
                }
                if r.step == step {
                    r.count += rest;
                    return;
                }
                // The character after `start` cannot continue this run.
                self.runs.push(Run {
                    start: start.saturating_add(step as u64),
                    step: if rest > 1 { step } else { 0 },
                    count: rest,
                });
                return;
            }
        } else if count >= BIG {
            self.push_slowly(start, count, step);
            return;
        }
        self.runs.push(Run {
            start,
            step: if rest > 0 { step } else { 0 },
            count: rest + 1,
        });
    }

    /// The rule itself, one character at a time: what [`Runs::push_many`]
    /// must agree with (a property test checks it), and its path for counts
    /// no line reaches.
    #[cold]
    fn push_slowly(&mut self, start: u64, count: usize, step: u32) {
        for k in 0..count as u64 {
            let off = start.saturating_add(k.saturating_mul(step as u64));
            match self.runs.last_mut() {
                Some(r) if r.count == 1 && off >= r.start && off - r.start <= u32::MAX as u64 => {
                    r.step = (off - r.start) as u32;
                    r.count = 2;
                }
                Some(r)
                    if r.count > 1
                        && r.count < u32::MAX
                        && r.start.checked_add(r.count as u64 * r.step as u64) == Some(off) =>
                {
                    r.count += 1;
                }
                _ => self.runs.push(Run {
                    start: off,
                    step: 0,
                    count: 1,
                }),
            }
        }
    }

    /// Offset of the last character pushed.
    pub(super) fn last(&self) -> Option<u64> {
        self.runs.last().map(|r| r.at(r.count - 1))
    }

    pub(super) fn mark(&self) -> Mark {
        Mark {
            len: self.runs.len(),
            last: self.runs.last().copied(),
        }
    }

    /// Forgets every character pushed since `mark`.
    pub(super) fn restore(&mut self, mark: Mark) {
        self.runs.truncate(mark.len);
        if let (Some(r), Some(last)) = (self.runs.last_mut(), mark.last) {
            *r = last;
        }
    }

    /// The line's offsets (an exact-size copy); the buffer is emptied for the
    /// next line and keeps its capacity.
    pub(super) fn take(&mut self) -> Offsets {
        let o = Offsets::from_runs(&self.runs);
        self.runs.clear();
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(o: &Offsets) -> Vec<(u64, u32, u32)> {
        o.runs()
            .iter()
            .map(|r| (r.start, r.step, r.count))
            .collect()
    }

    #[track_caller]
    fn check(offsets: &[u64], expected: &[(u64, u32, u32)]) {
        let o: Offsets = offsets.iter().copied().collect();
        assert_eq!(runs(&o), expected, "{offsets:?}");
        assert_eq!(o.iter().collect::<Vec<_>>(), offsets);
        assert_eq!(o.len(), offsets.len());
        assert_eq!(o.last(), offsets.last().copied());
        for (j, &off) in offsets.iter().enumerate() {
            assert_eq!(o.get(j), Some(off));
        }
        assert_eq!(o.get(offsets.len()), None);
    }

    #[test]
    fn progressions_become_runs() {
        check(&[], &[]);
        check(&[7], &[(7, 0, 1)]);
        check(&[2, 3, 4, 5], &[(2, 1, 4)]);
        // 单价 (two bytes each), then "12.50".
        check(&[10, 12, 14, 15, 16, 17, 18], &[(10, 2, 3), (15, 1, 4)]);
        // A command between two characters.
        check(&[0, 1, 5, 6], &[(0, 1, 2), (5, 1, 2)]);
        // Two characters from one sequence, and an offset going back (never
        // from the decoder, still kept exactly).
        check(&[4, 4, 9, 3], &[(4, 0, 2), (9, 0, 1), (3, 0, 1)]);
        // A gap wider than a step can say.
        check(&[0, 1 << 40, (1 << 40) + 1], &[(0, 0, 1), (1 << 40, 1, 2)]);
    }

    #[test]
    fn inline_and_heap_lines_behave_alike() {
        let short: Offsets = [0, 1, 2, 10, 12].into_iter().collect();
        assert!(matches!(short.0, Repr::Inline { len: 2, .. }));
        let long: Offsets = (0..20u64).map(|k| k * k).collect();
        assert!(matches!(long.0, Repr::Heap(_)));
        assert_eq!(
            long.iter().collect::<Vec<_>>(),
            (0..20u64).map(|k| k * k).collect::<Vec<_>>()
        );
    }

    #[test]
    fn push_many_is_that_many_pushes() {
        let mut rng = fastrand::Rng::with_seed(6);
        for _ in 0..2000 {
            let (mut bulk, mut single) = (Runs::default(), Runs::default());
            let mut at = rng.u64(0..4);
            for _ in 0..rng.usize(0..8) {
                let count = rng.usize(0..5);
                let step = rng.u32(0..4);
                // Sometimes a gap no step can bridge.
                if rng.u8(..) == 0 {
                    at += 1 << 33;
                }
                bulk.push_many(at, count, step);
                for k in 0..count {
                    single.push_slowly(at + k as u64 * step as u64, 1, 0);
                }
                at += count as u64 * step as u64 + rng.u64(0..3);
            }
            assert_eq!(bulk.runs, single.runs);
        }
    }

    #[test]
    fn restore_forgets_what_came_after_the_mark() {
        let mut r = Runs::default();
        r.push_many(0, 3, 1);
        let before = r.runs.clone();
        let mark = r.mark();
        r.push_many(3, 4, 1);
        r.push_many(20, 2, 3);
        r.restore(mark);
        assert_eq!(r.runs, before);
        let mut empty = Runs::default();
        let mark = empty.mark();
        empty.push(5);
        empty.restore(mark);
        assert!(empty.runs.is_empty());
    }
}
