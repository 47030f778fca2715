//! The statistics the audits report: proportions with Wilson intervals, a stratified rate, the ROC AUC
//! with a bootstrap interval, token edit distance, and a seeded random source.

use serde::{Deserialize, Serialize};

pub use crate::model::MaskRng as Rng;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A rate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Events counted (for a stratified estimate: the sum over strata, unweighted).
    pub hits: usize,
    /// Trials.
    pub n: usize,
    /// Point estimate.
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// `hits` out of `n` with the Wilson score interval (well-behaved at 0 and 1, unlike the normal one).
pub fn wilson(hits: usize, n: usize) -> Rate {
    if n == 0 {
        return Rate {
            hits,
            n,
            rate: 0.0,
            low: 0.0,
            high: 1.0,
        };
    }
    let (mut low, mut high) = wilson_bounds(hits as f64 / n as f64, n as f64);
    // At the ends the bound is exact; rounding would otherwise leave it a hair off 0 or 1.
    if hits == 0 {
        low = 0.0;
    }
    if hits >= n {
        high = 1.0;
    }
    Rate {
        hits,
        n,
        rate: hits as f64 / n as f64,
        low,
        high,
    }
}

fn wilson_bounds(p: f64, n: f64) -> (f64, f64) {
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A population rate from stratified samples: stratum `i` has population share `weights[i]` and
/// `hits[i]` out of `n[i]` sampled. The estimate weights each stratum's rate by its share; the interval
/// is Wilson's at Kish's effective sample size `1 / Σ wᵢ² / nᵢ` (strata without samples are left out and
/// the remaining weights renormalised).
pub fn stratified(weights: &[f64], hits: &[usize], n: &[usize]) -> Rate {
    let total_w: f64 = weights
        .iter()
        .zip(n)
        .filter(|(_, &n)| n > 0)
        .map(|(w, _)| w)
        .sum();
    let (all_hits, all_n) = (hits.iter().sum(), n.iter().sum());
    if total_w <= 0.0 {
        return wilson(all_hits, all_n);
    }
    let mut rate = 0.0;
    let mut inv_neff = 0.0;
    for ((&w, &h), &k) in weights.iter().zip(hits).zip(n) {
        if k == 0 {
            continue;
        }
        let w = w / total_w;
        rate += w * h as f64 / k as f64;
        inv_neff += w * w / k as f64;
    }
    let (low, high) = wilson_bounds(rate, 1.0 / inv_neff);
    Rate {
        hits: all_hits,
        n: all_n,
        rate,
        low,
        high,
    }
}

/// Area under the ROC curve for telling `positive` scores from `negative` ones (higher score means
/// "positive"): the Mann-Whitney probability that a random positive outscores a random negative, ties
/// counted half. 0.5 when either side is empty.
pub fn auc(positive: &[f64], negative: &[f64]) -> f64 {
    if positive.is_empty() || negative.is_empty() {
        return 0.5;
    }
    let mut all: Vec<(f64, bool)> = positive
        .iter()
        .map(|&s| (s, true))
        .chain(negative.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' ranks (1-based, ties given their average rank).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positive.len() as f64, negative.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

/// An AUC with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Auc {
    pub auc: f64,
    pub low: f64,
    pub high: f64,
}

/// [`auc`] with a percentile bootstrap over `resamples` resamplings of both sides (with replacement).
pub fn auc_bootstrap(positive: &[f64], negative: &[f64], resamples: usize, seed: u64) -> Auc {
    let point = auc(positive, negative);
    if resamples == 0 || positive.is_empty() || negative.is_empty() {
        return Auc {
            auc: point,
            low: point,
            high: point,
        };
    }
    let mut rng = Rng::new(seed);
    let mut draws = Vec::with_capacity(resamples);
    let (mut p, mut n) = (vec![0.0; positive.len()], vec![0.0; negative.len()]);
    for _ in 0..resamples {
        for x in p.iter_mut() {
            *x = positive[rng.below(positive.len() as u64) as usize];
        }
        for x in n.iter_mut() {
            *x = negative[rng.below(negative.len() as u64) as usize];
        }
        draws.push(auc(&p, &n));
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    Auc {
        auc: point,
        low: at(0.025),
        high: at(0.975),
    }
}

/// Levenshtein distance between two token sequences (insertions, deletions, substitutions).
pub fn edit_distance(a: &[u32], b: &[u32]) -> usize {
    if a.is_empty() {
        return b.len();
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let sub = diag + usize::from(x != y);
            diag = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Mean of the lowest `percent`% of `values` (at least one value); `None` when empty.
pub fn mean_of_lowest(values: &[f64], percent: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let k = ((v.len() as f64 * percent / 100.0).ceil() as usize).clamp(1, v.len());
    Some(v[..k].iter().sum::<f64>() / k as f64)
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// log2 of the upper tail `P(X >= x)` of a normal distribution, accurate far into the tail (where the
/// probability underflows a float) through the asymptotic expansion of the complementary error function.
pub fn log2_normal_tail(x: f64, mean: f64, std: f64) -> f64 {
    if std <= 0.0 || !std.is_finite() {
        return if x > mean { f64::NEG_INFINITY } else { 0.0 };
    }
    let z = (x - mean) / std;
    if z < 5.0 {
        (0.5 * erfc(z / std::f64::consts::SQRT_2)).log2()
    } else {
        // Mills ratio: Q(z) ≈ φ(z)/z · (1 − 1/z² + 3/z⁴).
        let log_phi = -0.5 * z * z - 0.5 * (2.0 * std::f64::consts::PI).ln();
        let series = 1.0 - 1.0 / (z * z) + 3.0 / z.powi(4);
        (log_phi - z.ln() + series.ln()) / std::f64::consts::LN_2
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_known_values() {
        let r = wilson(0, 100);
        assert_eq!(r.rate, 0.0);
        assert!(r.low == 0.0 && (r.high - 0.036_995).abs() < 1e-5, "{r:?}");
        let r = wilson(50, 100);
        assert!(
            (r.low - 0.403_832).abs() < 1e-5 && (r.high - 0.596_168).abs() < 1e-5,
            "{r:?}"
        );
        assert_eq!(wilson(0, 0).high, 1.0);
    }

    #[test]
    fn stratified_rate_weights_strata_by_population_share() {
        // 90% of the population never leaks, 10% always does: the population rate is 10%, although
        // half of the sample leaked.
        let r = stratified(&[0.9, 0.1], &[0, 50], &[50, 50]);
        assert!((r.rate - 0.1).abs() < 1e-12, "{r:?}");
        assert_eq!((r.hits, r.n), (50, 100));
        assert!(r.low < 0.1 && r.high > 0.1);
        // An empty stratum is left out.
        let r = stratified(&[0.5, 0.5], &[3, 0], &[10, 0]);
        assert!((r.rate - 0.3).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_pairs_and_ties() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auc(&[1.0, 1.0], &[1.0]), 0.5);
        // Pairs: (2>1) (2<3) (4>1) (4>3) → 3 of 4.
        assert_eq!(auc(&[2.0, 4.0], &[1.0, 3.0]), 0.75);
        assert_eq!(auc(&[], &[1.0]), 0.5);
    }

    #[test]
    fn bootstrap_interval_brackets_the_auc_and_is_seeded() {
        let pos: Vec<f64> = (0..60).map(|i| f64::from(i) + 10.0).collect();
        let neg: Vec<f64> = (0..60).map(f64::from).collect();
        let a = auc_bootstrap(&pos, &neg, 300, 1);
        assert!(a.low <= a.auc && a.auc <= a.high, "{a:?}");
        assert!(a.high - a.low > 0.01);
        assert_eq!(a, auc_bootstrap(&pos, &neg, 300, 1));
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        assert_eq!(edit_distance(&[1, 2, 3], &[1, 2, 3]), 0);
        assert_eq!(edit_distance(&[1, 2, 3], &[1, 3]), 1);
        assert_eq!(edit_distance(&[1, 2, 3], &[4, 2, 3, 5]), 2);
        assert_eq!(edit_distance(&[], &[7, 7]), 2);
        assert_eq!(edit_distance(&[5, 6], &[]), 2);
    }

    #[test]
    fn min_k_mean_and_normal_tail() {
        assert_eq!(mean_of_lowest(&[5.0, 1.0, 3.0, 2.0], 50.0), Some(1.5));
        assert_eq!(mean_of_lowest(&[5.0], 1.0), Some(5.0));
        assert_eq!(mean_of_lowest(&[], 20.0), None);
        assert!((log2_normal_tail(0.0, 0.0, 1.0) + 1.0).abs() < 1e-6);
        // P(Z >= 1.96) ≈ 0.025.
        assert!((log2_normal_tail(1.959_964, 0.0, 1.0) - 0.025f64.log2()).abs() < 1e-4);
        // The two branches agree around the switch.
        let below = log2_normal_tail(4.999_999, 0.0, 1.0);
        let above = log2_normal_tail(5.000_001, 0.0, 1.0);
        assert!((below - above).abs() < 0.01, "{below} vs {above}");
        // Far tail: P(Z >= 10) ≈ 7.62e-24.
        assert!((log2_normal_tail(10.0, 0.0, 1.0) - 7.619_853e-24f64.log2()).abs() < 0.01);
    }
}
