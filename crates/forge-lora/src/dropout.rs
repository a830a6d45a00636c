//! Seeded dropout: candle's `dropout` draws from an unseeded thread RNG, so two training runs
//! never see the same masks. Here the masks come from a per-thread ChaCha8 stream that
//! [`set_dropout_seed`] resets (forge-models' training loop does so from its seed), so a run is
//! reproducible bit for bit. LoRA adapters draw their input dropout from it too, and so do the
//! encoders of forge-models (which re-exports this module as `forge_models::dropout`). On the
//! CPU in f32 the product with the mask is one fused pass each way.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rand::RngCore;
use rayon::prelude::*;
use std::cell::RefCell;

thread_local! {
    static DROPOUT_RNG: RefCell<forge_linalg::ForgeRng> = RefCell::new(forge_linalg::seeded_rng(0));
}

/// Reset this thread's dropout stream to `seed` (it starts at seed 0). Dropout masks are drawn
/// in the order the forward passes request them, so a model run twice from the same seed, on
/// the same inputs, gets the same masks.
pub fn set_dropout_seed(seed: u64) {
    DROPOUT_RNG.with(|r| *r.borrow_mut() = forge_linalg::seeded_rng(seed));
}

/// Inverted dropout (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks
/// from Overfitting"): each entry is kept with probability `1 - p` and scaled by `1 / (1 - p)`,
/// zeroed otherwise, with a mask from this thread's seeded stream. Differentiable (a product
/// with a constant mask). `p = 0` returns `x`.
///
/// # Shapes
/// any -> same.
///
/// # Errors
/// Candle errors; `p` outside [0, 1) is an error naming the value.
pub fn seeded_dropout(x: &Tensor, p: f64) -> candle_core::Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout probability must be in [0, 1), got {p}")
    }
    if p == 0.0 {
        return Ok(x.clone());
    }
    let n = x.elem_count();
    // u32 draws in bulk from the seeded stream; an entry is kept when u >= p * 2^32
    // (probability 1 - p up to 2^-32)
    let u = draw(n);
    let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64);
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        // one fused pass each way, the same mask
        // `threshold` is an integer in [0, 2^32 - 1]: `v >= threshold` as u32 is the same test
        return masked_scale(x, u, threshold as u32, (1.0 / (1.0 - p)) as f32);
    }
    let u = Tensor::from_vec(u, x.shape(), x.device())?;
    let mask = (u.ge(threshold)?.to_dtype(x.dtype())? * (1.0 / (1.0 - p)))?;
    x * mask
}

/// Entries per rayon task.
const CHUNK: usize = 16 * 1024;

/// The next `n` u32 draws of this thread's stream, generated in parallel: each chunk seeks to
/// its own place in the ChaCha stream (a counter-based generator: word `i` does not depend on
/// the words before it), so the values are those of one sequential fill, on any thread count.
fn draw(n: usize) -> Vec<u32> {
    DROPOUT_RNG.with(|r| {
        let mut rng = r.borrow_mut();
        let start = rng.get_word_pos();
        let base = rng.clone();
        let mut u: Vec<u32> = Vec::with_capacity(n);
        u.spare_capacity_mut()
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| {
                let mut local = base.clone();
                local.set_word_pos(start + (i * CHUNK) as u128);
                for v in chunk {
                    v.write(local.next_u32());
                }
            });
        // SAFETY: the chunks above cover all n values and wrote each one.
        unsafe { u.set_len(n) };
        rng.set_word_pos(start + n as u128);
        u
    })
}

struct MaskedScale {
    /// Uniform draws, one per element: kept where `draw >= threshold`.
    draws: std::sync::Arc<Vec<u32>>,
    threshold: u32,
    scale: f32,
}

impl MaskedScale {
    fn apply(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        if x.len() != self.draws.len() {
            candle_core::bail!("dropout: {} values, mask of {}", x.len(), self.draws.len())
        }
        let mut y: Vec<f32> = Vec::with_capacity(x.len());
        let (s, th) = (self.scale, self.threshold);
        y.spare_capacity_mut()
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .zip(self.draws.par_chunks(CHUNK))
            .for_each(|((y, x), k)| {
                for ((yi, &xi), &ki) in y.iter_mut().zip(x).zip(k) {
                    yi.write(if ki >= th { xi * s } else { 0.0 });
                }
            });
        // SAFETY: the chunks above cover all x.len() values and wrote each one.
        unsafe { y.set_len(x.len()) };
        Ok(y)
    }
}

impl CustomOp1 for MaskedScale {
    fn name(&self) -> &'static str {
        "forge-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = forge_linalg::ops::contiguous_f32(s, l, "dropout")?;
        Ok((CpuStorage::F32(self.apply(x)?), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let same = MaskedScale {
            draws: self.draws.clone(),
            threshold: self.threshold,
            scale: self.scale,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&same)?))
    }
}

/// `x * [draw >= threshold] * scale` (dropout with given uniform draws) as one pass, its
/// backward the same product with the gradient. `x` must be f32 on the CPU; `draws` has one entry
/// per element of `x`.
fn masked_scale(
    x: &Tensor,
    draws: Vec<u32>,
    threshold: u32,
    scale: f32,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(MaskedScale {
        draws: std::sync::Arc::new(draws),
        threshold,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn same_seed_same_mask_and_expected_rate() {
        let x = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
        set_dropout_seed(5);
        let a = seeded_dropout(&x, 0.25).unwrap().to_vec2::<f32>().unwrap();
        set_dropout_seed(5);
        let b = seeded_dropout(&x, 0.25).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
        let c = seeded_dropout(&x, 0.25).unwrap().to_vec2::<f32>().unwrap();
        assert_ne!(a, c);
        let flat: Vec<f32> = a.into_iter().flatten().collect();
        let kept = flat.iter().filter(|v| **v != 0.0).count() as f64 / flat.len() as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
        assert!(flat
            .iter()
            .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6));
        assert!(seeded_dropout(&x, 1.0).is_err());
    }

    #[test]
    fn parallel_draws_are_the_sequential_stream() {
        // the stream the masks were drawn from before the draws went parallel: one bulk fill
        set_dropout_seed(3);
        let a = draw(3 * CHUNK + 17);
        let b = draw(5);
        let mut r = forge_linalg::seeded_rng(3);
        let mut want = vec![0u32; 3 * CHUNK + 22];
        rand::Rng::fill(&mut r, &mut want[..]);
        assert_eq!(a[..], want[..3 * CHUNK + 17]);
        assert_eq!(b[..], want[3 * CHUNK + 17..]);
    }

    #[test]
    fn fused_path_draws_the_mask_of_the_candle_path_and_backpropagates_it() {
        // f32 on the CPU takes the fused kernel, f64 the candle ops: same seed, same mask
        let x = candle_core::Var::new(
            &[[1.5f32, -2.0, 3.0, 0.25], [4.0, 5.0, -6.0, 7.0]],
            &Device::Cpu,
        )
        .unwrap();
        set_dropout_seed(11);
        let fused = seeded_dropout(x.as_tensor(), 0.5).unwrap();
        set_dropout_seed(11);
        let x64 = x.as_tensor().to_dtype(DType::F64).unwrap();
        let reference = seeded_dropout(&x64, 0.5).unwrap();
        assert_eq!(
            fused
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap(),
            reference.to_vec2::<f64>().unwrap()
        );
        let g = fused.sum_all().unwrap().backward().unwrap();
        let gx: Vec<Vec<f32>> = g.get(&x).unwrap().to_vec2().unwrap();
        let y: Vec<Vec<f32>> = fused.to_vec2().unwrap();
        for (gr, (yr, xr)) in gx
            .iter()
            .zip(y.iter().zip(x.as_tensor().to_vec2::<f32>().unwrap()))
        {
            for (&gi, (&yi, xi)) in gr.iter().zip(yr.iter().zip(xr)) {
                let expect = if yi == 0.0 { 0.0 } else { 2.0 };
                assert_eq!(gi, expect, "x {xi}");
            }
        }
    }
}
