//! Percentiles and means of a set of samples.

/// What the report shows of one set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
}

/// Summarises the samples; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let sorted = sorted(samples);
    Some(Summary {
        p50: percentile(&sorted, 50.0)?,
        p95: percentile(&sorted, 95.0)?,
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
    })
}

/// The median of unsorted samples; `None` when there are none.
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(&sorted(samples), 50.0)
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The `p`th percentile (0..=100) of sorted samples, interpolating linearly
/// between the two closest ranks (numpy's default), so the median of an even
/// number of samples is the mean of the middle two.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (*sorted.get(lo)?, *sorted.get(hi)?);
    Some(a + (b - a) * (rank - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn empty_has_no_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(summarize(&[]), None);
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        assert_eq!(percentile(&[7.0], 0.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 100.0), Some(7.0));
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn p95_of_one_to_hundred_interpolates() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p95 = percentile(&v, 95.0).unwrap_or(f64::NAN);
        // rank 0.95 * 99 = 94.05 -> between 95 and 96.
        assert!(close(p95, 95.05), "{p95}");
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
    }

    #[test]
    fn summary_sorts_its_input() {
        let s = summarize(&[10.0, 1.0, 5.0, 2.0, 3.0]);
        let s = s.unwrap_or(Summary {
            p50: 0.0,
            p95: 0.0,
            mean: 0.0,
        });
        assert!(close(s.p50, 3.0));
        assert!(close(s.mean, 4.2));
        // rank 0.95 * 4 = 3.8 -> 5 + 0.8 * (10 - 5).
        assert!(close(s.p95, 9.0));
    }
}
