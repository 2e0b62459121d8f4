//! A running sum of scores that stays accurate however many scores are added and taken away.
//!
//! Regrades subtract the old score and add the new one, so a plain `f64` sum would drift with
//! every regrade. `RunningSum` keeps the sum as an unevaluated pair `hi + lo` (double-double
//! arithmetic, ~106 significant bits), which is exact whenever the scores' bits span fewer than
//! 106 binary orders of magnitude: any realistic feed. It also keeps a rigorous bound on the
//! error it may have accumulated; when that bound stops being negligible next to the sum (only
//! possible with scores below about 1e-30 mixed with ordinary ones), [`RunningSum::is_reliable`]
//! says so and the owner recomputes the sum from its results.

/// Relative accuracy the scoreboard guarantees for averages; sums whose error bound exceeds this
/// fraction of their value are recomputed.
const RELATIVE_TOLERANCE: f64 = 1e-15;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RunningSum {
    hi: f64,
    lo: f64,
    /// An upper bound on `|(hi + lo) - exact sum|`.
    error_bound: f64,
}

impl RunningSum {
    pub(crate) fn add(&mut self, x: f64) {
        let (sum, sum_error) = two_sum(self.hi, x);
        // The only rounding in this addition is here: `sum_error + lo` is rounded once.
        let tail = sum_error + self.lo;
        (self.hi, self.lo) = fast_two_sum(sum, tail);
        self.error_bound += tail.abs() * f64::EPSILON;
    }

    pub(crate) fn replace(&mut self, old: f64, new: f64) {
        self.add(-old);
        self.add(new);
    }

    pub(crate) fn value(&self) -> f64 {
        self.hi + self.lo
    }

    /// Whether `value()` is within the guaranteed relative tolerance of the exact sum.
    pub(crate) fn is_reliable(&self) -> bool {
        self.error_bound <= RELATIVE_TOLERANCE * self.hi.abs()
    }

    /// A sum computed afresh from `values`.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> RunningSum {
        let mut sum = RunningSum::default();
        values.into_iter().for_each(|x| sum.add(x));
        // Freshly summed non-negative values carry only the bound of this pass, which is tiny
        // next to their sum; forgetting the history is the point of recomputing.
        sum.error_bound = sum.error_bound.min(RELATIVE_TOLERANCE * sum.hi.abs());
        sum
    }

    pub(crate) fn mean(&self, count: usize) -> f64 {
        if count == 0 { 0.0 } else { self.value() / count as f64 }
    }
}

/// Knuth's TwoSum: `a + b == s + e` exactly.
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_virtual = s - a;
    let a_virtual = s - b_virtual;
    (s, (a - a_virtual) + (b - b_virtual))
}

/// Dekker's FastTwoSum, exact when `|a| >= |b|` or `a == 0`; after `two_sum` the tail is always
/// far smaller than the head.
fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regrades_do_not_drift() {
        let mut sum = RunningSum::default();
        sum.add(0.1);
        for _ in 0..1_000_000 {
            sum.replace(0.1, 0.7);
            sum.replace(0.7, 0.1);
        }
        assert_eq!(sum.value(), 0.1);
        assert!(sum.is_reliable());
    }

    #[test]
    fn removing_everything_gives_exactly_zero() {
        let mut sum = RunningSum::default();
        let scores = [0.7895103274760336, 0.64, 0.3333333333333333, 1.0, 0.0];
        scores.iter().for_each(|&x| sum.add(x));
        scores.iter().for_each(|&x| sum.add(-x));
        assert_eq!(sum.value(), 0.0);
    }

    #[test]
    fn extreme_scale_is_flagged_for_recomputation() {
        let mut sum = RunningSum::default();
        sum.add(1e-300);
        sum.add(0.7);
        sum.add(0.3);
        sum.add(-0.7);
        sum.add(-0.3);
        // The exact sum is 1e-300; the pair may have lost it, and must say so.
        if (sum.value() - 1e-300).abs() > 1e-300 * RELATIVE_TOLERANCE {
            assert!(!sum.is_reliable());
        }
        assert_eq!(RunningSum::of([1e-300]).value(), 1e-300);
    }
}
