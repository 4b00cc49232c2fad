//! Median and p95 of a set of samples, the two figures every benchmark reports.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// Nearest-rank percentile: with 20 samples, p95 is the 19th smallest, a value
/// that was really observed rather than an interpolation between two.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Some(Summary {
        n: sorted.len(),
        median,
        p95: percentile(&sorted, 95.0),
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let s: Vec<f64> = (1..=20).map(f64::from).collect();
        let sum = summarize(&s).unwrap();
        assert_eq!(sum.median, 10.5);
        assert_eq!(sum.p95, 19.0);
        assert_eq!(summarize(&[3.0]).unwrap().p95, 3.0);
        assert!(summarize(&[]).is_none());
    }
}
