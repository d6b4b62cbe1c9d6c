//! Noise for the tests of this crate: a fixed LCG, so every run draws the
//! same series.

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64)
}

/// Sum of uniforms: close enough to normal for tests, sigma 1.
pub(crate) fn noise(seed: &mut u64) -> f64 {
    (0..12).map(|_| lcg(seed)).sum::<f64>() - 6.0
}
