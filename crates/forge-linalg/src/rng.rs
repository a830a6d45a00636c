//! Seeded randomness: every stochastic routine in Forge takes a `u64` seed and is reproducible.

use crate::Result;
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// The RNG used throughout Forge (ChaCha8: fast, portable, reproducible across platforms).
pub type ForgeRng = rand_chacha::ChaCha8Rng;

/// A reproducible RNG from a seed.
pub fn seeded_rng(seed: u64) -> ForgeRng {
    ForgeRng::seed_from_u64(seed)
}

/// A random permutation of `0..n`.
pub fn permutation(n: usize, rng: &mut ForgeRng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    idx
}

/// A tensor of i.i.d. standard normal samples.
///
/// # Errors
/// Candle errors on allocation.
pub fn randn(shape: &[usize], dtype: DType, device: &Device, rng: &mut ForgeRng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

/// A tensor of i.i.d. uniform samples in `[lo, hi)`.
///
/// # Errors
/// Candle errors on allocation.
pub fn rand_uniform(
    shape: &[usize],
    lo: f64,
    hi: f64,
    dtype: DType,
    device: &Device,
    rng: &mut ForgeRng,
) -> Result<Tensor> {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible() {
        let a = randn(&[4], DType::F64, &Device::Cpu, &mut seeded_rng(7)).unwrap();
        let b = randn(&[4], DType::F64, &Device::Cpu, &mut seeded_rng(7)).unwrap();
        assert_eq!(a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        let mut p = permutation(10, &mut seeded_rng(1));
        p.sort();
        assert_eq!(p, (0..10).collect::<Vec<_>>());
    }
}
