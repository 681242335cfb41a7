//! Pearson's chi-square goodness-of-fit test and binomial tails, for the statistical tests
//! (the kernel agreement of the netfilter engine, the lab's comparisons): one implementation
//! for every crate that samples the kernel.
//!
//! The chi-square survival function is the regularized upper incomplete gamma function
//! Q(k/2, x/2): the power series of P(a, x) for x < a + 1 and Legendre's continued fraction
//! (modified Lentz) otherwise; ln Γ by the Lanczos approximation (g = 7, 9 coefficients),
//! accurate to ~1e-15 for a > 0 (Abramowitz & Stegun 6.5.29 and 6.5.31).

/// ln Γ(z) for z > 0 (Lanczos, g = 7).
fn ln_gamma(z: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if z < 0.5 {
        // Reflection: Γ(z) Γ(1-z) = π / sin(πz).
        let pi = std::f64::consts::PI;
        return (pi / (pi * z).sin()).ln() - ln_gamma(1.0 - z);
    }
    let z = z - 1.0;
    let mut x = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        x += c / (z + i as f64);
    }
    let t = z + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (z + 0.5) * t.ln() - t + x.ln()
}

/// Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x >= 0.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let lead = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P(a, x) = e^{-x} x^a / Γ(a+1) * Σ x^n / ((a+1)...(a+n)).
        let mut sum = 1.0 / a;
        let mut term = sum;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * lead.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q(a, x) (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (lead.exp() * h).clamp(0.0, 1.0)
    }
}

/// P(X ≥ x) for X ~ χ²(df).
pub fn chi_square_sf(x: f64, df: usize) -> f64 {
    if df == 0 {
        return 1.0;
    }
    gamma_q(df as f64 / 2.0, x / 2.0)
}

/// The result of a goodness-of-fit test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub df: usize,
    pub p_value: f64,
}

/// Pearson's test of `observed` counts against `expected` probabilities (same order; the
/// probabilities are normalised). Categories with probability 0 must have been handled by the
/// caller (a count there is a set mismatch, not a statistical one).
pub fn chi_square(observed: &[u64], probabilities: &[f64]) -> ChiSquare {
    let n: u64 = observed.iter().sum();
    let total_p: f64 = probabilities.iter().sum();
    let mut stat = 0.0;
    let mut k: usize = 0;
    for (o, p) in observed.iter().zip(probabilities) {
        if *p <= 0.0 || total_p <= 0.0 {
            continue;
        }
        let e = n as f64 * p / total_p;
        if e > 0.0 {
            stat += (*o as f64 - e).powi(2) / e;
            k += 1;
        }
    }
    let df = k.saturating_sub(1);
    ChiSquare {
        statistic: stat,
        df,
        p_value: chi_square_sf(stat, df),
    }
}

/// Pearson's test as [`chi_square`], with every category whose expected count is below 5
/// pooled into one (the usual rule of thumb for the chi-square approximation; the kernel
/// agreement tests use it, where many rare outcomes meet a few common ones).
pub fn chi_square_pooled(observed: &[u64], probabilities: &[f64]) -> ChiSquare {
    let n = observed.iter().sum::<u64>() as f64;
    let total_p: f64 = probabilities.iter().sum();
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let (mut small_o, mut small_e) = (0.0, 0.0);
    for (o, p) in observed.iter().zip(probabilities) {
        let e = if total_p > 0.0 { p / total_p * n } else { 0.0 };
        if e < 5.0 {
            small_o += *o as f64;
            small_e += e;
        } else {
            bins.push((*o as f64, e));
        }
    }
    if small_e > 0.0 || small_o > 0.0 {
        bins.push((small_o, small_e.max(1e-12)));
    }
    let statistic: f64 = bins.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    let df = bins.len().saturating_sub(1);
    ChiSquare {
        statistic,
        df,
        p_value: chi_square_sf(statistic, df),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn survival_function_matches_tables() {
        // Critical values of the chi-square distribution (NIST/SEMATECH e-Handbook, table of
        // upper critical values): P(X >= x) = 0.001 at x = 10.828 (df 1), 13.816 (df 2),
        // 16.266 (df 3); 0.05 at 3.841 (df 1), 5.991 (df 2).
        assert!(close(chi_square_sf(10.828, 1), 0.001, 2e-5));
        assert!(close(chi_square_sf(13.816, 2), 0.001, 2e-5));
        assert!(close(chi_square_sf(16.266, 3), 0.001, 2e-5));
        assert!(close(chi_square_sf(3.841, 1), 0.05, 2e-4));
        assert!(close(chi_square_sf(5.991, 2), 0.05, 2e-4));
        // df 2 has the closed form exp(-x/2).
        for x in [0.1, 1.0, 4.0, 20.0] {
            assert!(close(chi_square_sf(x, 2), (-x / 2.0f64).exp(), 1e-12));
        }
        assert_eq!(chi_square_sf(0.0, 3), 1.0);
    }

    #[test]
    fn survival_matches_more_tabulated_critical_values() {
        for (x, df, p) in [(18.467, 4, 0.001), (11.070, 5, 0.05), (31.410, 20, 0.05)] {
            let got = chi_square_sf(x, df);
            assert!((got - p).abs() < p * 0.01, "df {df} x {x}: {got} vs {p}");
        }
        assert!((ln_gamma(5.0) - 24.0f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn pooled_fit_accepts_a_fair_split_and_rejects_a_skewed_one() {
        assert!(chi_square_pooled(&[1010, 990], &[0.5, 0.5]).p_value > 0.5);
        assert!(chi_square_pooled(&[1200, 800], &[0.5, 0.5]).p_value < 1e-10);
        // The rare category is pooled with nothing: three bins, two degrees of freedom... plus
        // the pooled one.
        let f = chi_square_pooled(&[500, 500, 1000, 1], &[0.25, 0.25, 0.5, 0.0001]);
        assert_eq!(f.df, 3);
    }

    #[test]
    fn pearson() {
        // 104/91/105 against 1/3 each: X² = (4.33² + 9.67² + 5.33²)/100 ≈ 1.22.
        let r = chi_square(&[104, 91, 105], &[1.0, 1.0, 1.0]);
        assert_eq!(r.df, 2);
        assert!(close(r.statistic, 1.22, 0.01));
        assert!(r.p_value > 0.5);
        // 300/0 against 1/2 each is wildly off.
        let r = chi_square(&[300, 0], &[0.5, 0.5]);
        assert!(r.p_value < 1e-10);
    }
}

/// P(X <= k) for X ~ Binomial(n, p), summed in log space (n up to a few thousand).
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n || p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    // log C(n, i) built up term by term.
    let mut log_c = 0.0f64;
    let mut sum = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        sum += (log_c + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    sum.min(1.0)
}

/// P(X >= k) for X ~ Binomial(n, p).
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        1.0
    } else {
        1.0 - binomial_cdf(k - 1, n, p)
    }
}

#[cfg(test)]
mod binomial_tests {
    use super::*;

    #[test]
    fn binomial_tails() {
        // n = 4, p = 1/2: P(X <= 1) = 5/16, P(X >= 3) = 5/16.
        assert!((binomial_cdf(1, 4, 0.5) - 5.0 / 16.0).abs() < 1e-12);
        assert!((binomial_sf(3, 4, 0.5) - 5.0 / 16.0).abs() < 1e-12);
        assert_eq!(binomial_sf(0, 10, 0.1), 1.0);
        // 240 trials at 1/4: 100 successes are far too many.
        assert!(binomial_sf(100, 240, 0.25) < 1e-6);
        assert!(binomial_cdf(60, 240, 0.25) > 0.4);
    }
}
