//! A small log-linear latency histogram in microseconds (the idea of HdrHistogram): values below
//! 2^SUB are exact, above that every power of two is split into 2^SUB buckets, so a recorded
//! value is off by less than 1/2^SUB (0.8 %) of itself. Fixed size, mergeable, no allocation
//! while recording.

const SUB: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB;
/// Covers up to 2^40 µs (12.7 days).
const BUCKETS: usize = ((40 - SUB + 1) as usize) * SUB_COUNT as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < SUB_COUNT {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB
    let shift = exp - SUB;
    let mantissa = (v >> shift) - SUB_COUNT; // 0..SUB_COUNT
    ((shift as u64 + 1) * SUB_COUNT + mantissa) as usize
}

/// The highest value that lands in bucket `i` (what percentiles report: never optimistic).
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_COUNT {
        return i;
    }
    let shift = i / SUB_COUNT - 1;
    let mantissa = i % SUB_COUNT + SUB_COUNT;
    ((mantissa + 1) << shift) - 1
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, us: u64) {
        let i = index(us).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(us);
        self.sum += us as u128;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1), in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in (0..2_000_000u64).step_by(7).chain([u32::MAX as u64]) {
            let i = index(v);
            assert!(upper(i) >= v, "{v} above its bucket's top {}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < v, "{v} also fits the bucket below");
            }
            assert!((upper(i) - v) as f64 <= v as f64 / 100.0 + 1.0, "{v}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_sample() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max(), 10_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.01, "{p50}");
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.01, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert!((h.mean() - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn merging_adds_counts() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.quantile(0.5), 10);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(Histogram::new().quantile(0.99), 0);
    }
}
