//! Loss statistics: intervals on a binomial proportion and the test that
//! keeps telemetry loss from being reported as network loss.

/// Wilson score interval at about 95 % for `lost` out of `sent`: well
/// behaved at zero and at small counts, where the normal approximation is not.
pub fn wilson_interval(lost: u64, sent: u64) -> (f64, f64) {
    if sent == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_964f64;
    let n = sent as f64;
    let p = lost as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * n)) / n).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Largest count a Poisson variable of mean `mean` reaches with
/// probability 99.9 % (normal approximation with continuity correction
/// above 30, exact sum below): observed loss up to this is explained by
/// telemetry loss alone.
pub fn poisson_upper(mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        return (mean + 3.09 * mean.sqrt() + 0.5).ceil() as u64;
    }
    let mut term = (-mean).exp();
    let mut cdf = term;
    let mut k = 0u64;
    while cdf < 0.999 && k < 200 {
        k += 1;
        term *= mean / k as f64;
        cdf += term;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_contains_the_proportion_and_stays_in_range() {
        let (lo, hi) = wilson_interval(77, 6851);
        assert!(lo < 77.0 / 6851.0 && 77.0 / 6851.0 < hi);
        assert!(lo > 0.008 && hi < 0.015, "{lo} {hi}");
        let (lo, hi) = wilson_interval(0, 100);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.03 && hi < 0.04);
    }

    #[test]
    fn poisson_upper_bounds() {
        assert_eq!(poisson_upper(0.0), 0);
        assert_eq!(poisson_upper(1.0), 5);
        assert!(poisson_upper(100.0) >= 130);
    }
}
