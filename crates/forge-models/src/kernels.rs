//! Fused CPU kernels with a backward pass for the encoder's non-GEMM work: layer norm, exact
//! GELU and the masked softmax of attention.
//!
//! Built from candle ops, each of these is a chain of 5-10 elementwise passes forward and as many
//! backward, each allocating a fresh activation-sized buffer (the profile of a training step had
//! more time in those passes, their page faults and candle's scalar `erff` than in the GEMMs).
//! Here each is one pass forward and one backward, split over rayon's threads, with
//! vectorisable polynomial `exp` / `erf` compiled for AVX-512 and AVX2 and chosen at run time
//! (a generic build runs everywhere). They apply to contiguous f32 tensors on the CPU; anything
//! else (other dtypes, CUDA, Metal) takes the candle-op path in [`crate::layers`], whose values
//! these match to float rounding (tests below).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use forge_linalg::ops::contiguous_f32 as f32_slice;
use forge_linalg::par::{par_new, par_new_overwrite};
use forge_linalg::sgemm::small_gemm;
use rayon::prelude::*;

/// Rows handed to one rayon task: enough work per task to amortise the scheduling.
const MIN_ELEMS_PER_TASK: usize = 16 * 1024;

/// Whether the fused kernels apply to `t` (contiguous f32 on the CPU).
pub(crate) fn eligible(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// Runs `body` on vectorised code for the best instruction set this CPU has.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features v4 is compiled for were detected on this CPU.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// `e^x` in f32 (Cody-Waite range reduction, degree-6 Taylor polynomial on
/// `[-ln2/2, ln2/2]`, relative error < 4e-7); 0 below -87.3, clamped above 88.3. Branch-free so
/// that loops over it vectorise.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFTER: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.3, 88.3);
    let t = xc.mul_add(LOG2E, SHIFTER);
    let n = t - SHIFTER;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let bits = (t.to_bits().wrapping_sub(SHIFTER.to_bits()) as i32).wrapping_add(127) << 23;
    let y = p * f32::from_bits(bits as u32);
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// Independent partial sums of the reductions below: a float reduction in one accumulator is a
/// dependency chain the compiler may not reorder (so it stays scalar); sixteen accumulators, one
/// per lane of a 512-bit register, let it vectorise.
const LANES: usize = 16;

/// `sum_i f(a_i, b_i, c_i)` over three equally long slices, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for i in 0..LANES {
            acc[i] += f(xa[i], xb[i], xc[i]);
        }
    }
    let mut tail = 0f32;
    for ((&x, &y), &z) in ra.iter().zip(rb).zip(rc) {
        tail += f(x, y, z);
    }
    acc.iter().sum::<f32>() + tail
}

/// `sum_i f(a_i, b_i)` over two equally long slices, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    lane_sum3(a, b, b, |x, y, _| f(x, y))
}

/// `sum_i f(a_i)` in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_sum3(a, a, a, |x, _, _| f(x))
}

/// `max_i (a_i + b_i)` in [`LANES`] partial maxima (NaN-free inputs: `>` instead of `f32::max`).
#[inline(always)]
fn lane_max_of_sum(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for i in 0..LANES {
            let v = xa[i] + xb[i];
            acc[i] = if v > acc[i] { v } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for v in acc
        .iter()
        .copied()
        .chain(ra.iter().zip(rb).map(|(x, y)| x + y))
    {
        m = if v > m { v } else { m };
    }
    m
}

/// `erf(x)` in f32: Abramowitz & Stegun 7.1.26 (1.5e-7 in exact arithmetic, < 6e-7 in f32),
/// branch-free.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let p = 1.061_405_4f32;
    let p = p.mul_add(t, -1.453_152_1);
    let p = p.mul_add(t, 1.421_413_7);
    let p = p.mul_add(t, -0.284_496_74);
    let p = p.mul_add(t, 0.254_829_6);
    let y = 1.0 - p * t * exp_f32(-a * a);
    y.copysign(x)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

multiversion! {
    fn gelu_fwd_chunk(x: &[f32], y: &mut [f32]) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi = 0.5 * xi * (1.0 + erf_f32(xi * FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    fn gelu_bwd_chunk(x: &[f32], g: &[f32], dx: &mut [f32]) {
        for ((di, &xi), &gi) in dx.iter_mut().zip(x).zip(g) {
            let cdf = 0.5 * (1.0 + erf_f32(xi * FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp_f32(-0.5 * xi * xi);
            *di = gi * xi.mul_add(pdf, cdf);
        }
    }
}

fn par_map1(x: &[f32], f: fn(&[f32], &mut [f32])) -> Vec<f32> {
    let c = MIN_ELEMS_PER_TASK;
    // SAFETY: `f` maps x onto y elementwise, writing every value of y.
    unsafe { par_new_overwrite(x.len(), c, |i, y| f(&x[i * c..i * c + y.len()], y)) }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "forge-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "gelu")?;
        Ok((
            CpuStorage::F32(par_map1(x, gelu_fwd_chunk)),
            l.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluErfBwd)?,
        ))
    }
}

struct GeluErfBwd;

impl CustomOp2 for GeluErfBwd {
    fn name(&self) -> &'static str {
        "forge-gelu-erf-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, g) = (
            f32_slice(s1, l1, "gelu bwd")?,
            f32_slice(s2, l2, "gelu bwd")?,
        );
        if x.len() != g.len() {
            candle_core::bail!("gelu bwd: {} inputs, {} gradients", x.len(), g.len())
        }
        let c = MIN_ELEMS_PER_TASK;
        // SAFETY: x, g and dx are equally long; the kernel writes every dx value.
        let dx = unsafe {
            par_new_overwrite(x.len(), c, |i, d| {
                let r = i * c..i * c + d.len();
                gelu_bwd_chunk(&x[r.clone()], &g[r], d)
            })
        };
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Exact GELU `x Phi(x)` (Hendrycks & Gimpel 2016) as one fused op with its backward
/// `Phi(x) + x phi(x)`. `x` must be [`eligible`].
pub(crate) fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(GeluErf)
}

multiversion! {
    fn ln_fwd_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let d = w.len();
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = lane_sum(xr, |v| v) / d as f32;
            let var = lane_sum(xr, |v| (v - mean) * (v - mean)) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for (((yi, &xi), &wi), &bi) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                *yi = ((xi - mean) * rstd).mul_add(wi, bi);
            }
        }
    }
}

multiversion! {
    /// dx for the rows of `x`; adds the rows' contributions to dw (first d) and db (last d).
    fn ln_bwd_rows(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32], dwb: &mut [f32]) {
        let d = w.len();
        let (dw, db) = dwb.split_at_mut(d);
        for ((xr, gr), dxr) in x.chunks_exact(d).zip(g.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
            let mean = lane_sum(xr, |v| v) / d as f32;
            let var = lane_sum(xr, |v| (v - mean) * (v - mean)) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            let s_g = lane_sum2(gr, w, |gi, wi| gi * wi);
            let s_gx = lane_sum3(xr, gr, w, |xi, gi, wi| gi * wi * ((xi - mean) * rstd));
            for ((&xi, &gi), (dwi, dbi)) in xr.iter().zip(gr).zip(dw.iter_mut().zip(db.iter_mut()))
            {
                *dwi = gi.mul_add((xi - mean) * rstd, *dwi);
                *dbi += gi;
            }
            let (m_g, m_gx) = (s_g / d as f32, s_gx / d as f32);
            for (((di, &xi), &gi), &wi) in dxr.iter_mut().zip(xr).zip(gr).zip(w) {
                let xh = (xi - mean) * rstd;
                *di = rstd * (gi * wi - m_g - xh * m_gx);
            }
        }
    }
}

fn rows_per_task(d: usize) -> usize {
    (MIN_ELEMS_PER_TASK / d.max(1)).max(1)
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "forge-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "layer norm")?;
        let (w, b) = (
            f32_slice(s2, l2, "layer norm weight")?,
            f32_slice(s3, l3, "layer norm bias")?,
        );
        let d = w.len();
        if d == 0 || b.len() != d || x.len() % d != 0 {
            candle_core::bail!(
                "layer norm: weight {d}, bias {}, input {}",
                b.len(),
                x.len()
            )
        }
        let chunk = rows_per_task(d) * d;
        // SAFETY: every chunk is whole rows of d (x.len() is a multiple of d, checked above)
        // and the kernel writes every value of each row.
        let y = unsafe {
            par_new_overwrite(x.len(), chunk, |i, y| {
                ln_fwd_rows(&x[i * chunk..i * chunk + y.len()], w, b, self.eps, y)
            })
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let n = x.elem_count() / d;
        let packed = x.apply_op3_no_bwd(w, &grad.contiguous()?, &LayerNormBwd { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.get(n)?.reshape(w.shape())?;
        let db = packed.get(n + 1)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

struct LayerNormBwd {
    eps: f32,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "forge-layer-norm-bwd"
    }

    /// Output `[n + 2, d]`: dx, then dw, then db.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "layer norm bwd")?;
        let w = f32_slice(s2, l2, "layer norm bwd weight")?;
        let g = f32_slice(s3, l3, "layer norm bwd gradient")?;
        let d = w.len();
        if d == 0 || g.len() != x.len() || x.len() % d != 0 {
            candle_core::bail!(
                "layer norm bwd: weight {d}, input {}, grad {}",
                x.len(),
                g.len()
            )
        }
        let n = x.len() / d;
        let chunk = rows_per_task(d) * d;
        let mut out = vec![0f32; (n + 2) * d];
        let (dx, dwb) = out.split_at_mut(n * d);
        let partial: Vec<f32> = dx
            .par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .zip(g.par_chunks(chunk))
            .map(|((dx, x), g)| {
                let mut acc = vec![0f32; 2 * d];
                ln_bwd_rows(x, w, g, self.eps, dx, &mut acc);
                acc
            })
            .reduce(
                || vec![0f32; 2 * d],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        dwb.copy_from_slice(&partial);
        Ok((CpuStorage::F32(out), Shape::from((n + 2, d))))
    }
}

/// Layer normalisation over the last dimension (Ba et al. 2016) as one fused op with its
/// backward (gradients of the input, the scale and the shift). All three must be [`eligible`].
pub(crate) fn layer_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )
}

multiversion! {
    /// Softmax of each row of `s + mask_row` (the mask row chosen per row by the caller).
    fn softmax_rows(s: &[f32], mask: &[f32], y: &mut [f32]) {
        let d = mask.len();
        for (sr, yr) in s.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let max = lane_max_of_sum(sr, mask);
            for ((yi, &a), &m) in yr.iter_mut().zip(sr).zip(mask) {
                *yi = exp_f32(a + m - max);
            }
            let inv = 1.0 / lane_sum(yr, |e| e);
            yr.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

multiversion! {
    fn softmax_bwd_rows(y: &[f32], g: &[f32], d: usize, dx: &mut [f32]) {
        for ((yr, gr), dr) in y.chunks_exact(d).zip(g.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
            let dot = lane_sum2(yr, gr, |a, b| a * b);
            for ((di, &yi), &gi) in dr.iter_mut().zip(yr).zip(gr) {
                *di = yi * (gi - dot);
            }
        }
    }
}

struct MaskedSoftmax;

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "forge-masked-softmax"
    }

    /// scores `[b, h, q, k]`, mask `[b, 1, 1, k]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = f32_slice(s1, l1, "softmax")?;
        let m = f32_slice(s2, l2, "softmax mask")?;
        let (b, h, q, k) = l1.shape().dims4()?;
        if l2.shape().dims() != [b, 1, 1, k] {
            candle_core::bail!(
                "softmax mask: expected [{b}, 1, 1, {k}], got {:?}",
                l2.shape()
            )
        }
        // one task per (batch, head): its rows share the batch's mask row
        // SAFETY: each chunk is q whole rows of k, and the kernel writes every value of each.
        let y = unsafe {
            par_new_overwrite(s.len(), q * k, |i, y| {
                let bi = i / h;
                softmax_rows(&s[i * q * k..(i + 1) * q * k], &m[bi * k..(bi + 1) * k], y)
            })
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _s: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            Some(res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxBwd)?),
            None,
        ))
    }
}

struct SoftmaxBwd;

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "forge-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, "softmax bwd")?;
        let g = f32_slice(s2, l2, "softmax bwd gradient")?;
        let d = *l1.shape().dims().last().unwrap_or(&1);
        if y.len() != g.len() || d == 0 {
            candle_core::bail!("softmax bwd: {} outputs, {} gradients", y.len(), g.len())
        }
        let chunk = rows_per_task(d) * d;
        // SAFETY: y.len() is a multiple of d (the last dimension), each chunk is whole rows,
        // and the kernel writes every value of each row.
        let dx = unsafe {
            par_new_overwrite(y.len(), chunk, |i, dx| {
                let r = i * chunk..i * chunk + dx.len();
                softmax_bwd_rows(&y[r.clone()], &g[r], d, dx)
            })
        };
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `softmax(scores + mask)` over the last dimension as one fused op; the backward pass yields
/// the scores' gradient (the additive mask is a constant). scores `[b, h, q, k]`, mask
/// `[b, 1, 1, k]`; both [`eligible`].
pub(crate) fn masked_softmax(scores: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    scores
        .contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax)
}

/// How an operand or result of [`heads_matmul`] holds its `[b, h, R, C]` matrices: as a 4-D
/// tensor, or packed the way attention's projections hold their heads (`[b * S, h * D]`, one
/// row per token, the heads side by side), and possibly transposed. Reading the heads straight
/// out of the projections, and storing results and gradients the way their consumers hold
/// them, leaves no split, merge or transpose nodes in the graph: no copies forward, and none
/// of the zero-fill-and-add gradient accumulations that candle's backward pass runs for every
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Form {
    /// `[b * S, h * D]` (else `[b, h, R, C]`).
    packed: bool,
    /// The matrices are the transposes of what the tensor holds.
    t: bool,
}

impl Form {
    /// A 4-D `[b, h, R, C]` tensor (any strides).
    pub(crate) const PLAIN: Form = Form {
        packed: false,
        t: false,
    };
    /// A `[b * R, h * C]` tensor: row `i * R + r`, columns `j * C..(j + 1) * C` hold row `r` of
    /// head `j` of batch element `i`.
    pub(crate) const PACKED: Form = Form {
        packed: true,
        t: false,
    };

    /// The same storage read transposed.
    pub(crate) fn t(self) -> Form {
        Form { t: !self.t, ..self }
    }

    /// The logical `[b, h, R, C]` dimensions and strides of an operand held in this form.
    fn operand(
        self,
        l: &Layout,
        nb: usize,
        nh: usize,
    ) -> candle_core::Result<([usize; 4], [usize; 4])> {
        let st = l.stride();
        let (dims, strides) = if self.packed {
            let (rows, cols) = l.shape().dims2()?;
            if nb == 0 || nh == 0 || rows % nb != 0 || cols % nh != 0 {
                candle_core::bail!("heads matmul: [{rows}, {cols}] is not {nb} x {nh} packed heads")
            }
            let (r, c) = (rows / nb, cols / nh);
            ([nb, nh, r, c], [r * st[0], c * st[1], st[0], st[1]])
        } else {
            let (b, h, r, c) = l.shape().dims4()?;
            if (b, h) != (nb, nh) {
                candle_core::bail!("heads matmul: {:?} is not [{nb}, {nh}, _, _]", l.shape())
            }
            ([b, h, r, c], [st[0], st[1], st[2], st[3]])
        };
        Ok(if self.t {
            (
                [dims[0], dims[1], dims[3], dims[2]],
                [strides[0], strides[1], strides[3], strides[2]],
            )
        } else {
            (dims, strides)
        })
    }

    /// Storage shape and logical (batch, head, row, column) strides of a `[b, h, m, n]` result
    /// held in this form.
    fn output(self, b: usize, h: usize, m: usize, n: usize) -> (Shape, [usize; 4]) {
        match (self.packed, self.t) {
            (false, false) => (Shape::from((b, h, m, n)), [h * m * n, m * n, n, 1]),
            (false, true) => (Shape::from((b, h, n, m)), [h * m * n, m * n, 1, m]),
            (true, false) => (Shape::from((b * m, h * n)), [m * h * n, n, h * n, 1]),
            (true, true) => (Shape::from((b * n, h * m)), [n * h * m, m, 1, h * m]),
        }
    }
}

/// `scale * A B` over `b` batch elements and `h` heads, each operand and the result in its
/// [`Form`]; `bf16`: bf16 operands with f32 accumulation (the mode in force when the forward op
/// was built, kept for its backward pass).
struct HeadsMatmul {
    bf16: bool,
    scale: f32,
    nb: usize,
    nh: usize,
    fa: Form,
    fb: Form,
    out: Form,
}

/// The `rows x cols` matrix at `start` of `v` with strides `rs`, `cs`, bounds-checked.
fn view(
    v: &[f32],
    start: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> forge_linalg::Result<forge_linalg::bf16::MatRef<'_>> {
    let data = v.get(start..).unwrap_or(&[]);
    forge_linalg::bf16::MatRef::new(data, rows, cols, rs, cs)
}

/// The output buffer, shared by the tasks of a batched product (each writes its own elements).
struct SharedOut(*mut f32);
// SAFETY: the tasks sharing it write disjoint elements of one live allocation (see cpu_fwd).
unsafe impl Sync for SharedOut {}

impl CustomOp2 for HeadsMatmul {
    fn name(&self) -> &'static str {
        "forge-heads-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (s1, s2) else {
            candle_core::bail!("heads matmul: f32 operands expected")
        };
        let (da, sa) = self.fa.operand(l1, self.nb, self.nh)?;
        let (db, sb) = self.fb.operand(l2, self.nb, self.nh)?;
        let (nb, nh, m, k, p) = (da[0], da[1], da[2], da[3], db[3]);
        if db[2] != k {
            candle_core::bail!("heads matmul: {da:?} x {db:?}")
        }
        let (a0, b0) = (l1.start_offset(), l2.start_offset());
        let (shape, os) = self.out.output(nb, nh, m, p);
        if os[2] != 1 && os[3] != 1 {
            // every Form stores its rows or its columns contiguously (the bf16 path copies runs)
            candle_core::bail!("heads matmul: output strides {os:?} have no unit stride")
        }
        let total = nb * nh * m * p;
        if k == 0 || total == 0 {
            return Ok((CpuStorage::F32(vec![0f32; total]), shape));
        }
        let mut out: Vec<f32> = Vec::with_capacity(total);
        let dst = SharedOut(out.as_mut_ptr());
        let dst = &dst;
        // one single-threaded product per (batch, head), spread over rayon's threads (candle
        // runs them one after the other, each split over the threads: at attention sizes,
        // 64 x 64 x 64, the splitting cost more than it gained)
        (0..nb * nh)
            .into_par_iter()
            .try_for_each(|t| -> forge_linalg::Result<()> {
                let (bi, hi) = (t / nh, t % nh);
                let (ai, bj) = (a0 + bi * sa[0] + hi * sa[1], b0 + bi * sb[0] + hi * sb[1]);
                let av = view(a, ai, m, k, sa[2], sa[3])?;
                let bv = view(b, bj, k, p, sb[2], sb[3])?;
                let base = bi * os[0] + hi * os[1];
                if self.bf16 {
                    // the product oriented so that its rows are the destination's contiguous
                    // runs (scaled run copies vectorise; an element loop was ~7 % of a MiniLM
                    // bf16 forward): A B when the destination's rows are contiguous, else
                    // (A B)^T = B^T A^T (its columns are, checked above)
                    let gemm = forge_linalg::bf16::Bf16Gemm::new().threads(1);
                    let (tmp, run, stride) = if os[3] == 1 {
                        (gemm.run_new(av, bv, None)?, p, os[2])
                    } else {
                        (gemm.run_new(bv.t(), av.t(), None)?, m, os[3])
                    };
                    for (r, src) in tmp.chunks_exact(run).enumerate() {
                        // SAFETY: (bi, hi, i, j) -> base + i os[2] + j os[3] maps the
                        // [b, h, m, p] index space one-to-one onto 0..total (a permuted
                        // row-major layout), so the `run` elements base + r stride + (0..run)
                        // (one row, or one column, of this task's result) are this task's
                        // alone and in bounds; they are viewed as MaybeUninit (not yet
                        // written) and only written.
                        let d = unsafe {
                            std::slice::from_raw_parts_mut(
                                dst.0
                                    .add(base + r * stride)
                                    .cast::<std::mem::MaybeUninit<f32>>(),
                                run,
                            )
                        };
                        d.iter_mut().zip(src).for_each(|(d, v)| {
                            d.write(v * self.scale);
                        });
                    }
                } else {
                    // SAFETY: `view` bounds-checked both operands over their storages; the
                    // destination elements of this task lie within the `total` allocated
                    // values and belong to this task alone (as above); small_gemm writes each
                    // of them without reading it.
                    unsafe {
                        small_gemm(
                            (m, p, k),
                            (dst.0.add(base), os[2], os[3]),
                            (a.as_ptr().add(ai), sa[2], sa[3]),
                            (b.as_ptr().add(bj), sb[2], sb[3]),
                            self.scale,
                            false,
                        )
                    }
                }
                Ok(())
            })
            .map_err(|e| candle_core::Error::Msg(format!("heads matmul: {e}")))?;
        // SAFETY: the tasks above wrote all `total` values (the layout is a bijection).
        unsafe { out.set_len(total) };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // dA = scale G B^T and dB = scale A^T G, each stored in its operand's form (so it has
        // the operand's shape and reaches it without any conversion)
        let op = |fa, fb, out| HeadsMatmul {
            fa,
            fb,
            out,
            ..*self
        };
        let ga = a
            .track_op()
            .then(|| grad.apply_op2(b, op(self.out, self.fb.t(), self.fa)))
            .transpose()?;
        let gb = b
            .track_op()
            .then(|| a.apply_op2(grad, op(self.fa.t(), self.out, self.fb)))
            .transpose()?;
        Ok((ga, gb))
    }
}

/// Batched matrix product `scale * A B` over `batch` elements and `heads` heads, each operand
/// and the result held in its [`Form`] (attention reads its heads straight out of the
/// `[b * s, h * d]` projections: scores `heads_matmul((q, PACKED), (k, PACKED.t()), PLAIN)`,
/// context `heads_matmul((probs, PLAIN), (v, PACKED), PACKED)`). The (batch, head) products run
/// in parallel, one single-threaded GEMM each, with a backward pass built from the same op
/// that stores each gradient in its operand's form. For attention's many small products; the
/// operands must be [`eligible`]. In the bf16 mode ([`forge_linalg::bf16::matmul_precision`])
/// the products, forward and backward, take bf16 operands with f32 accumulation.
pub(crate) fn heads_matmul(
    (a, fa): (&Tensor, Form),
    (b, fb): (&Tensor, Form),
    out: Form,
    scale: f64,
    batch: usize,
    heads: usize,
) -> candle_core::Result<Tensor> {
    let bf16 = forge_linalg::bf16::matmul_precision() == forge_linalg::bf16::MatmulPrecision::Bf16;
    a.apply_op2(
        b,
        HeadsMatmul {
            bf16,
            scale: scale as f32,
            nb: batch,
            nh: heads,
            fa,
            fb,
            out,
        },
    )
}

/// Multi-head attention `softmax(scale Q K^T + mask) V` over packed projections as one op, with
/// its backward pass (for evaluation mode, or training without attention dropout).
///
/// Q, K and V are `[b * s, h * d]` (one row per position, head `j` in columns `j d..(j + 1) d`),
/// as are the context it returns and the gradients; `mask` is the additive key mask, `[b, s]`.
/// One task per (batch, head) computes its `s x s` scores, their softmax and the context in
/// cache, so no `[b, h, s, s]` tensor is a node of the graph: the three-op chain it replaces
/// wrote scores and probabilities to memory and candle's backward pass stored and accumulated
/// a gradient for each. When an input is tracked the probabilities are kept inside the op for
/// the backward pass (the memory the chain's probabilities took); otherwise nothing is kept.
struct FusedAttention {
    nb: usize,
    nh: usize,
    s: usize,
    d: usize,
    scale: f32,
    mask: Vec<f32>,
    keep: bool,
    probs: std::sync::Mutex<Option<Vec<f32>>>,
}

impl FusedAttention {
    /// Checks that `l` holds a contiguous `[b * s, h * d]` operand; returns its values.
    fn operand<'a>(
        &self,
        s: &'a CpuStorage,
        l: &Layout,
        what: &str,
    ) -> candle_core::Result<&'a [f32]> {
        let dims = l.shape().dims();
        if dims != [self.nb * self.s, self.nh * self.d] {
            candle_core::bail!(
                "attention: {what} is {dims:?}, expected [{}, {}]",
                self.nb * self.s,
                self.nh * self.d
            )
        }
        f32_slice(s, l, "attention")
    }

    /// Where task `t`'s (batch, head) block starts in a packed `[b * s, h * d]` operand: row
    /// `batch * s`, column `head * d`.
    fn block(&self, t: usize) -> usize {
        (t / self.nh) * self.s * self.nh * self.d + (t % self.nh) * self.d
    }

    /// The softmax of task `t`'s scaled and masked scores into `p` (`s x s`).
    fn probabilities(&self, t: usize, q: &[f32], k: &[f32], scores: &mut [f32], p: &mut [f32]) {
        let (s, d, dim) = (self.s, self.d, self.nh * self.d);
        let bi = t / self.nh;
        let off = self.block(t);
        // SAFETY: the Q and K blocks (rows bi s.., columns hi d..) lie within the checked
        // [b s, h d] operands; `scores` is this task's own s x s buffer; d > 0 (checked by the
        // caller).
        unsafe {
            small_gemm(
                (s, s, d),
                (scores.as_mut_ptr(), s, 1),
                (q.as_ptr().add(off), dim, 1),
                (k.as_ptr().add(off), 1, dim),
                self.scale,
                false,
            );
        }
        softmax_rows(scores, &self.mask[bi * s..(bi + 1) * s], p);
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "forge-fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            self.operand(s1, l1, "Q")?,
            self.operand(s2, l2, "K")?,
            self.operand(s3, l3, "V")?,
        );
        let (s, d, dim, tasks) = (self.s, self.d, self.nh * self.d, self.nb * self.nh);
        let total = self.nb * s * dim;
        if total == 0 || s == 0 {
            return Ok((CpuStorage::F32(vec![0f32; total]), l1.shape().clone()));
        }
        let mut out = Vec::with_capacity(total);
        // zeroed (not left uninitialised): the tasks view their blocks as `&mut [f32]`
        let mut kept = if self.keep {
            vec![0f32; tasks * s * s]
        } else {
            Vec::new()
        };
        let (dst, pk) = (SharedOut(out.as_mut_ptr()), SharedOut(kept.as_mut_ptr()));
        let (dst, pk) = (&dst, &pk);
        (0..tasks).into_par_iter().for_each_init(
            || (vec![0f32; s * s], vec![0f32; s * s]),
            |(scores, local), t| {
                let p: &mut [f32] = if self.keep {
                    // SAFETY: values t s^2 .. (t + 1) s^2 of the kept probabilities (tasks s^2
                    // initialised values) are task t's alone, and the Vec is neither read nor
                    // moved until every task has finished.
                    unsafe { std::slice::from_raw_parts_mut(pk.0.add(t * s * s), s * s) }
                } else {
                    local
                };
                self.probabilities(t, q, k, scores, p);
                let off = self.block(t);
                // SAFETY: the context block of task t (rows bi s.., columns hi d..) lies within
                // the total values allocated and is written by this task alone; V's block lies
                // within the checked operand; s > 0.
                unsafe {
                    small_gemm(
                        (s, d, s),
                        (dst.0.add(off), dim, 1),
                        (p.as_ptr(), s, 1),
                        (v.as_ptr().add(off), dim, 1),
                        1.0,
                        false,
                    );
                }
            },
        );
        // SAFETY: the tasks wrote every block of the output.
        unsafe { out.set_len(total) };
        if self.keep {
            *self
                .probs
                .lock()
                .map_err(|_| candle_core::Error::Msg("attention: poisoned".into()))? = Some(kept);
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let want = [q.track_op(), k.track_op(), v.track_op()];
        let (s, d, dim, tasks) = (self.s, self.d, self.nh * self.d, self.nb * self.nh);
        let total = self.nb * s * dim;
        let guards = [q, k, v, &grad].map(|t| t.storage_and_layout());
        let mut vals = Vec::with_capacity(4);
        for (what, (st, l)) in ["Q", "K", "V", "gradient"].iter().zip(&guards) {
            let candle_core::Storage::Cpu(cpu) = &**st else {
                candle_core::bail!("attention backward: CPU tensors expected")
            };
            vals.push(self.operand(cpu, l, what)?);
        }
        let (qv, kv, vv, g) = (vals[0], vals[1], vals[2], vals[3]);
        if total == 0 || s == 0 || d == 0 {
            let z = || Tensor::zeros(q.shape(), q.dtype(), q.device());
            return Ok((Some(z()?), Some(z()?), Some(z()?)));
        }
        let kept = self
            .probs
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: poisoned".into()))?;
        let mut outs: [Vec<f32>; 3] = std::array::from_fn(|i| {
            if want[i] {
                Vec::with_capacity(total)
            } else {
                Vec::new()
            }
        });
        let ptrs = outs.each_mut().map(|o| SharedOut(o.as_mut_ptr()));
        let ptrs = &ptrs;
        let kept = kept.as_deref();
        (0..tasks).into_par_iter().for_each_init(
            || (vec![0f32; s * s], vec![0f32; s * s], vec![0f32; s * s]),
            |(a, b, c), t| {
                // the probabilities: kept by the forward pass, else computed again
                let p: &[f32] = match kept {
                    Some(pk) => &pk[t * s * s..(t + 1) * s * s],
                    None => {
                        self.probabilities(t, qv, kv, a, b);
                        &b[..]
                    }
                };
                let off = self.block(t);
                // SAFETY (all products below): every operand block lies within its checked
                // [b s, h d] operand or this task's s x s buffers; each destination block (rows
                // bi s.., columns hi d.. of a gradient allocated with `total` values) is written
                // by this task alone; s, d > 0.
                unsafe {
                    if want[2] {
                        // dV = P^T dO
                        small_gemm(
                            (s, d, s),
                            (ptrs[2].0.add(off), dim, 1),
                            (p.as_ptr(), 1, s),
                            (g.as_ptr().add(off), dim, 1),
                            1.0,
                            false,
                        );
                    }
                    if want[0] || want[1] {
                        // dP = dO V^T, then dS = P (dP - rowsum(dP P)) (softmax backward)
                        small_gemm(
                            (s, s, d),
                            (c.as_mut_ptr(), s, 1),
                            (g.as_ptr().add(off), dim, 1),
                            (vv.as_ptr().add(off), 1, dim),
                            1.0,
                            false,
                        );
                        let ds = &mut a[..]; // the scores buffer, free again
                        softmax_bwd_rows(p, c, s, ds);
                        if want[0] {
                            // dQ = scale dS K
                            small_gemm(
                                (s, d, s),
                                (ptrs[0].0.add(off), dim, 1),
                                (ds.as_ptr(), s, 1),
                                (kv.as_ptr().add(off), dim, 1),
                                self.scale,
                                false,
                            );
                        }
                        if want[1] {
                            // dK = scale dS^T Q
                            small_gemm(
                                (s, d, s),
                                (ptrs[1].0.add(off), dim, 1),
                                (ds.as_ptr(), 1, s),
                                (qv.as_ptr().add(off), dim, 1),
                                self.scale,
                                false,
                            );
                        }
                    }
                }
            },
        );
        let shape = q.shape().clone();
        let mut res = [None, None, None];
        for (i, mut o) in outs.into_iter().enumerate() {
            if want[i] {
                // SAFETY: the tasks wrote every block of each wanted gradient.
                unsafe { o.set_len(total) };
                res[i] = Some(Tensor::from_vec(o, shape.clone(), q.device())?);
            }
        }
        let [rq, rk, rv] = res;
        Ok((rq, rk, rv))
    }
}

/// `softmax(scale Q K^T + mask) V` per head as one op ([`FusedAttention`]): q, k, v
/// `[b * s, h * d]` packed projections, mask `[b, 1, 1, s]` (additive), all [`eligible`];
/// returns the context `[b * s, h * d]` with the heads merged. For evaluation mode and training
/// without attention dropout, with f32 products (the bf16 mode keeps [`heads_matmul`]).
pub(crate) fn fused_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    heads: usize,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (b, _, _, s) = mask.dims4()?;
    let (rows, dim) = q.dims2()?;
    if mask.dims() != [b, 1, 1, s] || rows != b * s || heads == 0 || dim % heads != 0 {
        candle_core::bail!(
            "attention: mask {:?} and projections {:?} are not [b, 1, 1, s] and [b * s, {heads} heads x d]",
            mask.dims(),
            q.dims()
        )
    }
    let keep = q.track_op() || k.track_op() || v.track_op();
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        FusedAttention {
            nb: b,
            nh: heads,
            s,
            d: dim / heads,
            scale: scale as f32,
            mask: mask.flatten_all()?.to_vec1::<f32>()?,
            keep,
            probs: std::sync::Mutex::new(None),
        },
    )
}

/// Row lookup `table[ids]` with a backward pass that adds the output gradient's rows into a
/// fresh table-sized gradient, skipping the padding row (PyTorch's `nn.Embedding(padding_idx)`
/// semantics). candle's `index_select` backward zero-fills an accumulator, then `index_add`
/// copies it before adding; here the gradient is one parallel zero fill and a pass over the
/// batch's rows, and the padding row needs no extra ops.
struct EmbeddingLookup {
    padding: Option<u32>,
}

/// The ids of an [`EmbeddingLookup`], each checked to be below `num`.
fn lookup_ids<'a>(s: &'a CpuStorage, l: &Layout, num: usize) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        candle_core::bail!("embedding: u32 ids expected")
    };
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("embedding: contiguous ids expected".into()))?;
    let ids = &v[a..b];
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= num) {
        candle_core::bail!("embedding: id {bad} is out of range for a table of {num} rows")
    }
    Ok(ids)
}

impl CustomOp2 for EmbeddingLookup {
    fn name(&self) -> &'static str {
        "forge-embedding"
    }

    /// table `[num, dim]`, ids `[n]` -> `[n, dim]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (num, dim) = l1.shape().dims2()?;
        let table = f32_slice(s1, l1, "embedding table")?;
        let ids = lookup_ids(s2, l2, num)?;
        let mut out = Vec::with_capacity(ids.len() * dim);
        for &i in ids {
            let i = i as usize;
            out.extend_from_slice(&table[i * dim..(i + 1) * dim]);
        }
        Ok((CpuStorage::F32(out), Shape::from((ids.len(), dim))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = ids.apply_op2_no_bwd(
            &grad.contiguous()?,
            &EmbeddingGrad {
                padding: self.padding,
                num: table.dim(0)?,
            },
        )?;
        Ok((Some(d), None))
    }
}

/// The table gradient of [`EmbeddingLookup`]: ids `[n]`, output gradient `[n, dim]` ->
/// `[num, dim]`.
struct EmbeddingGrad {
    padding: Option<u32>,
    num: usize,
}

impl CustomOp2 for EmbeddingGrad {
    fn name(&self) -> &'static str {
        "forge-embedding-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let ids = lookup_ids(s1, l1, self.num)?;
        let (n, dim) = l2.shape().dims2()?;
        if n != ids.len() {
            candle_core::bail!("embedding grad: {} ids, {n} gradient rows", ids.len())
        }
        let g = f32_slice(s2, l2, "embedding grad")?;
        // zeros filled in parallel chunks (the table is the model's largest tensor)
        let mut d = par_new(self.num * dim, 1 << 16, |_, _| {});
        for (&i, gr) in ids.iter().zip(g.chunks_exact(dim.max(1))) {
            if Some(i) == self.padding {
                continue;
            }
            let i = i as usize;
            d[i * dim..(i + 1) * dim]
                .iter_mut()
                .zip(gr)
                .for_each(|(a, &b)| *a += b);
        }
        Ok((CpuStorage::F32(d), Shape::from((self.num, dim))))
    }
}

/// `table[ids]` as one op ([`EmbeddingLookup`]): table `[num, dim]` f32, ids `[n]` u32, both
/// on the CPU; the row `padding` gets no gradient. Out-of-range ids are an error naming the id.
pub(crate) fn embedding_lookup(
    table: &Tensor,
    ids: &Tensor,
    padding: Option<u32>,
) -> candle_core::Result<Tensor> {
    table
        .contiguous()?
        .apply_op2(&ids.contiguous()?, EmbeddingLookup { padding })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn rand(shape: &[usize], seed: u64, scale: f64) -> Tensor {
        let mut rng = forge_linalg::seeded_rng(seed);
        (forge_linalg::rng::randn(shape, candle_core::DType::F32, &Device::Cpu, &mut rng).unwrap()
            * scale)
            .unwrap()
    }

    /// The gradients of `sum(y * g)`: `g` back-propagated through `y`.
    fn grads_of(y: &Tensor, g: &Tensor) -> candle_core::backprop::GradStore {
        (y * g).unwrap().sum_all().unwrap().backward().unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        forge_linalg::ops::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.0045; // [-90, 90]
            let e = exp_f32(x) as f64;
            let r = (x as f64).exp();
            if r > 1e-37 && r < 1e38 {
                worst_exp = worst_exp.max(((e - r) / r).abs());
            }
            let xe = i as f32 * 0.0004; // [-8, 8]
            worst_erf = worst_erf.max((erf_f32(xe) as f64 - libm_erf(xe as f64)).abs());
        }
        assert!(worst_exp < 4e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 1e-6, "erf absolute error {worst_erf}");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::MIN), 0.0);
    }

    /// erf in f64 by its Maclaurin series / continued fraction, independent of the kernel.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            // sum_n (-1)^n x^(2n+1) / (n! (2n+1)) * 2/sqrt(pi)
            let (mut term, mut sum) = (x, x);
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc by its continued fraction (Lentz), accurate for |x| >= 3
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..200).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn gelu_value_and_gradient_match_candle() {
        let x = Var::from_tensor(&rand(&[7, 300], 1, 3.0)).unwrap();
        let g = rand(&[7, 300], 2, 1.0);
        let fused = gelu_erf(x.as_tensor()).unwrap();
        let reference = x.as_tensor().gelu_erf().unwrap();
        assert!(max_abs_diff(&fused, &reference) < 2e-6);
        let gf = grads_of(&fused, &g);
        let gr = grads_of(&reference, &g);
        let (a, b) = (gf.get(&x).unwrap(), gr.get(&x).unwrap());
        assert!(max_abs_diff(a, b) < 2e-5, "{}", max_abs_diff(a, b));
    }

    #[test]
    fn layer_norm_value_and_gradients_match_candle_ops() {
        // 96 = six full 16-lane blocks; 100 and 7 exercise the remainder of the lane reductions
        for d in [96, 100, 7] {
            let x = Var::from_tensor(&rand(&[3, 5, d], 3, 2.0)).unwrap();
            let w = Var::from_tensor(&(rand(&[d], 4, 0.5) + 1.0).unwrap()).unwrap();
            let b = Var::from_tensor(&rand(&[d], 5, 0.5)).unwrap();
            let g = rand(&[3, 5, d], 6, 1.0);
            let eps = 1e-12;
            let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), eps).unwrap();
            let reference = {
                let x = x.as_tensor();
                let mean = x.mean_keepdim(D::Minus1).unwrap();
                let xc = x.broadcast_sub(&mean).unwrap();
                let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(w.as_tensor())
                    .unwrap()
                    .broadcast_add(b.as_tensor())
                    .unwrap()
            };
            assert!(max_abs_diff(&fused, &reference) < 2e-6, "d {d}");
            let gf = grads_of(&fused, &g);
            let gr = grads_of(&reference, &g);
            for v in [&x, &w, &b] {
                let (a, r) = (gf.get(v).unwrap(), gr.get(v).unwrap());
                assert_eq!(a.dims(), r.dims());
                assert!(max_abs_diff(a, r) < 5e-5, "d {d}: {}", max_abs_diff(a, r));
            }
        }
    }

    #[test]
    fn masked_softmax_value_and_gradient_match_candle_ops() {
        // 7 keys: the lane reductions' remainder only; 37: two 16-lane blocks and a remainder,
        // with masked keys in both
        for k in [7usize, 37] {
            let s = Var::from_tensor(&rand(&[2, 3, 5, k], 7, 3.0)).unwrap();
            let masked_at = |j: usize| j >= k - 2 || (k > 16 && j == 3);
            let row0: Vec<f32> = (0..k)
                .map(|j| if masked_at(j) { f32::MIN } else { 0.0 })
                .collect();
            let mask = Tensor::new(row0, &Device::Cpu)
                .unwrap()
                .reshape((1, 1, 1, k))
                .unwrap();
            let mask = Tensor::cat(&[&mask, &mask.zeros_like().unwrap()], 0).unwrap();
            let g = rand(&[2, 3, 5, k], 8, 1.0);
            let fused = masked_softmax(s.as_tensor(), &mask).unwrap();
            let reference =
                candle_nn::ops::softmax(&s.as_tensor().broadcast_add(&mask).unwrap(), D::Minus1)
                    .unwrap();
            assert!(max_abs_diff(&fused, &reference) < 1e-6, "k {k}");
            let first = fused.narrow(0, 0, 1).unwrap().flatten_all().unwrap();
            let first = first.to_vec1::<f32>().unwrap();
            for (i, p) in first.iter().enumerate() {
                if masked_at(i % k) {
                    assert_eq!(*p, 0.0, "masked keys get exactly zero probability (k {k})");
                }
            }
            let gf = grads_of(&fused, &g);
            let gr = grads_of(&reference, &g);
            let (a, r) = (gf.get(&s).unwrap(), gr.get(&s).unwrap());
            assert!(max_abs_diff(a, r) < 1e-6, "k {k}: {}", max_abs_diff(a, r));
        }
    }

    /// Attention from candle's own ops: heads split, `softmax(scale Q K^T + mask) V`, merged.
    fn attention_reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        (b, s, h, d): (usize, usize, usize, usize),
        scale: f64,
    ) -> Tensor {
        let heads = |t: &Tensor| {
            t.reshape((b, s, h, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let scores = (heads(q).matmul(&heads(k).t().unwrap()).unwrap() * scale)
            .unwrap()
            .broadcast_add(mask)
            .unwrap();
        let p = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        p.matmul(&heads(v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b * s, h * d))
            .unwrap()
    }

    #[test]
    fn fused_attention_value_and_gradients_match_candle_ops() {
        // s = 19 and d = 5: no multiple of any vector width; batch 1 masks its last 4 keys
        let (b, s, h, d) = (2, 19, 3, 5);
        let scale = 1.0 / (d as f64).sqrt();
        let mut row = vec![0f32; b * s];
        row[s + s - 4..].fill(f32::MIN);
        let mask = Tensor::from_vec(row, (b, 1, 1, s), &Device::Cpu).unwrap();
        let qv = Var::from_tensor(&rand(&[b * s, h * d], 21, 1.0)).unwrap();
        let kv = Var::from_tensor(&rand(&[b * s, h * d], 22, 1.0)).unwrap();
        let vv = Var::from_tensor(&rand(&[b * s, h * d], 23, 1.0)).unwrap();
        let g = rand(&[b * s, h * d], 24, 1.0);
        let (q, k, v) = (qv.as_tensor(), kv.as_tensor(), vv.as_tensor());
        let dims = (b, s, h, d);
        let fused = fused_attention(q, k, v, &mask, h, scale).unwrap();
        let reference = attention_reference(q, k, v, &mask, dims, scale);
        assert_eq!(fused.dims(), &[b * s, h * d]);
        assert!(
            max_abs_diff(&fused, &reference) < 2e-6,
            "{}",
            max_abs_diff(&fused, &reference)
        );
        let (gf, gr) = (grads_of(&fused, &g), grads_of(&reference, &g));
        for (name, x) in [("q", &qv), ("k", &kv), ("v", &vv)] {
            let (a, r) = (gf.get(x).unwrap(), gr.get(x).unwrap());
            assert!(max_abs_diff(a, r) < 1e-5, "d{name}: {}", max_abs_diff(a, r));
        }
        // only Q tracked: only its gradient, the same one
        let fused = fused_attention(q, &k.detach(), &v.detach(), &mask, h, scale).unwrap();
        let gq = grads_of(&fused, &g);
        assert!(gq.get(&kv).is_none() && gq.get(&vv).is_none());
        assert!(max_abs_diff(gq.get(&qv).unwrap(), gr.get(&qv).unwrap()) < 1e-5);
        // the probabilities recomputed in the backward pass (none kept) give the same gradients
        let op = |keep| FusedAttention {
            nb: b,
            nh: h,
            s,
            d,
            scale: scale as f32,
            mask: mask.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            keep,
            probs: std::sync::Mutex::new(None),
        };
        let y = q.apply_op3(k, v, op(false)).unwrap();
        let gn = grads_of(&y, &g);
        for x in [&qv, &kv, &vv] {
            assert!(max_abs_diff(gn.get(x).unwrap(), gf.get(x).unwrap()) < 1e-6);
        }
        // masked keys get no attention: V's rows of masked positions get no gradient
        let dv: Vec<Vec<f32>> = gf.get(&vv).unwrap().to_vec2().unwrap();
        assert!(dv[2 * s - 4..].iter().flatten().all(|&x| x == 0.0));
    }

    #[test]
    fn embedding_lookup_matches_index_select_and_skips_the_padding_row() {
        let table = Var::from_tensor(&rand(&[7, 5], 31, 1.0)).unwrap();
        // id 3 twice (its gradient rows add up), id 0 the padding row
        let ids = Tensor::new(&[3u32, 1, 0, 3, 6, 0], &Device::Cpu).unwrap();
        let g = rand(&[6, 5], 32, 1.0);
        let y = embedding_lookup(table.as_tensor(), &ids, Some(0)).unwrap();
        let reference = table.as_tensor().index_select(&ids, 0).unwrap();
        assert_eq!(max_abs_diff(&y, &reference), 0.0);
        let d = grads_of(&y, &g)
            .get(&table)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let r = grads_of(&reference, &g)
            .get(&table)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row, (a, b)) in d.iter().zip(&r).enumerate() {
            if row == 0 {
                assert!(
                    a.iter().all(|&x| x == 0.0),
                    "the padding row gets no gradient"
                );
                assert!(b.iter().any(|&x| x != 0.0));
            } else {
                assert!(
                    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6),
                    "row {row}"
                );
            }
        }
        // without a padding row every row gets its gradient
        let y = embedding_lookup(table.as_tensor(), &ids, None).unwrap();
        let d = grads_of(&y, &g).get(&table).unwrap().clone();
        let r = grads_of(&reference, &g).get(&table).unwrap().clone();
        assert!(max_abs_diff(&d, &r) < 1e-6);
        // an id past the table is an error naming it
        let bad = Tensor::new(&[2u32, 7], &Device::Cpu).unwrap();
        let e = embedding_lookup(table.as_tensor(), &bad, None).unwrap_err();
        assert!(e.to_string().contains("id 7"), "{e}");
    }

    #[test]
    fn fused_attention_rejects_bad_shapes() {
        let q = rand(&[2 * 4, 6], 1, 1.0);
        let mask = Tensor::zeros((2, 1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fused_attention(&q, &q, &q, &mask, 4, 1.0).is_err()); // 6 not divisible by 4
        let short = rand(&[7, 6], 2, 1.0);
        assert!(fused_attention(&short, &short, &short, &mask, 2, 1.0).is_err());
        assert!(fused_attention(&q, &short, &q, &mask, 2, 1.0).is_err());
        let bad_mask = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(fused_attention(&q, &q, &q, &bad_mask, 2, 1.0).is_err());
    }

    #[test]
    fn heads_matmul_value_and_gradients_match_candle() {
        // attention: heads read straight out of [b * s, h * d] projections, context packed
        let (b, s, h, d) = (2, 5, 3, 4);
        let qp = Var::from_tensor(&rand(&[b * s, h * d], 9, 1.0)).unwrap();
        let kp = Var::from_tensor(&rand(&[b * s, h * d], 10, 1.0)).unwrap();
        let vp = Var::from_tensor(&rand(&[b * s, h * d], 15, 1.0)).unwrap();
        let g = rand(&[b * s, h * d], 11, 1.0);
        let scale = 0.5;
        let run = |fused: bool| {
            if fused {
                let (q, k, v) = (qp.as_tensor(), kp.as_tensor(), vp.as_tensor());
                let sc = heads_matmul(
                    (q, Form::PACKED),
                    (k, Form::PACKED.t()),
                    Form::PLAIN,
                    scale,
                    b,
                    h,
                )
                .unwrap();
                assert_eq!(sc.dims(), &[b, h, s, s]);
                let p = (sc.sin().unwrap() * 2.0).unwrap(); // any differentiable map
                heads_matmul(
                    (&p, Form::PLAIN),
                    (v, Form::PACKED),
                    Form::PACKED,
                    1.0,
                    b,
                    h,
                )
                .unwrap()
            } else {
                let heads = |t: &Var| {
                    t.as_tensor()
                        .reshape((b, s, h, d))
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .contiguous()
                        .unwrap()
                };
                let (q, k, v) = (heads(&qp), heads(&kp), heads(&vp));
                let sc = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
                let p = (sc.sin().unwrap() * 2.0).unwrap();
                let ctx = p.matmul(&v).unwrap();
                ctx.transpose(1, 2)
                    .unwrap()
                    .reshape((b * s, h * d))
                    .unwrap()
            }
        };
        let (fused, reference) = (run(true), run(false));
        assert_eq!(fused.dims(), &[b * s, h * d]);
        assert!(max_abs_diff(&fused, &reference) < 1e-5);
        let gf = grads_of(&fused, &g);
        let gr = grads_of(&reference, &g);
        for p in [&qp, &kp, &vp] {
            let (x, y) = (gf.get(p).unwrap(), gr.get(p).unwrap());
            assert_eq!(x.dims(), p.dims());
            assert!(max_abs_diff(x, y) < 1e-5, "{}", max_abs_diff(x, y));
        }
    }

    /// A result held in `form`, as the logical `[b, h, m, n]` tensor.
    fn logical(y: &Tensor, form: Form, (b, h, m, n): (usize, usize, usize, usize)) -> Tensor {
        match (form.packed, form.t) {
            (false, false) => y.clone(),
            (false, true) => y.transpose(2, 3).unwrap(),
            (true, false) => y.reshape((b, m, h, n)).unwrap().transpose(1, 2).unwrap(),
            (true, true) => y
                .reshape((b, n, h, m))
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap(),
        }
    }

    #[test]
    fn heads_matmul_stores_every_form_and_reads_transposes() {
        let (b, h, m, k, n) = (2, 3, 5, 4, 6);
        let a = Var::from_tensor(&rand(&[b, h, k, m], 17, 1.0)).unwrap(); // held transposed
        let bm = Var::from_tensor(&rand(&[b, h, k, n], 18, 1.0)).unwrap();
        let at = a.as_tensor().transpose(2, 3).unwrap();
        let want = (at.matmul(bm.as_tensor()).unwrap() * 0.25).unwrap();
        let g = rand(&[b, h, m, n], 19, 1.0);
        let gr = grads_of(&want, &g);
        let forms = [Form::PLAIN, Form::PLAIN.t(), Form::PACKED, Form::PACKED.t()];
        for out in forms {
            let y = heads_matmul(
                (a.as_tensor(), Form::PLAIN.t()),
                (bm.as_tensor(), Form::PLAIN),
                out,
                0.25,
                b,
                h,
            )
            .unwrap();
            let y = logical(&y, out, (b, h, m, n));
            assert!(max_abs_diff(&y, &want) < 1e-5, "{out:?}");
            let gf = grads_of(&y, &g);
            for v in [&a, &bm] {
                let (x, r) = (gf.get(v).unwrap(), gr.get(v).unwrap());
                assert!(max_abs_diff(x, r) < 1e-5, "{out:?}: {}", max_abs_diff(x, r));
            }
        }
        // zero depth: zeros
        let y = heads_matmul(
            (&rand(&[1, 2, 3, 0], 1, 1.0), Form::PLAIN),
            (&rand(&[1, 2, 0, 4], 1, 1.0), Form::PLAIN),
            Form::PACKED,
            1.0,
            1,
            2,
        )
        .unwrap();
        assert_eq!(y.dims(), &[3, 8]);
        assert_eq!(
            y.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    #[test]
    fn heads_matmul_shape_errors() {
        let q = rand(&[10, 12], 1, 1.0);
        let p = Form::PACKED;
        // 10 rows are not 3 batch elements; 12 columns are not 5 heads
        assert!(heads_matmul((&q, p), (&q, p.t()), Form::PLAIN, 1.0, 3, 3).is_err());
        assert!(heads_matmul((&q, p), (&q, p.t()), Form::PLAIN, 1.0, 2, 5).is_err());
        // inner dimensions differ ([2, 3, 5, 4] x [2, 3, 5, 4])
        assert!(heads_matmul((&q, p), (&q, p), Form::PLAIN, 1.0, 2, 3).is_err());
        // 4-D operand with other batch / head counts
        let x = rand(&[2, 3, 5, 4], 1, 1.0);
        assert!(heads_matmul(
            (&x, Form::PLAIN),
            (&x, Form::PLAIN.t()),
            Form::PLAIN,
            1.0,
            3,
            2
        )
        .is_err());
        assert!(heads_matmul(
            (&x, Form::PLAIN),
            (&x, Form::PLAIN.t()),
            Form::PLAIN,
            1.0,
            2,
            3
        )
        .is_ok());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let s = rand(&[2, 3, 5, 7], 1, 1.0);
        assert!(masked_softmax(&s, &rand(&[2, 1, 1, 6], 1, 1.0)).is_err());
        let x = rand(&[4, 8], 1, 1.0);
        assert!(layer_norm(&x, &rand(&[6], 1, 1.0), &rand(&[6], 1, 1.0), 1e-5).is_err());
    }

    #[test]
    fn heads_matmul_in_bf16_mode_rounds_the_operands() {
        use forge_linalg::bf16::{round_to_bf16, with_matmul_precision, MatmulPrecision};
        let a = Var::from_tensor(&rand(&[2, 3, 5, 40], 12, 1.0)).unwrap();
        let b0 = Var::from_tensor(&rand(&[2, 3, 6, 40], 13, 1.0)).unwrap();
        let g = rand(&[2, 3, 5, 6], 14, 1.0);
        let bt = b0.as_tensor().t().unwrap();
        let round = |t: &Tensor| {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let r: Vec<f32> = v.into_iter().map(round_to_bf16).collect();
            Tensor::from_vec(r, t.dims(), &Device::Cpu).unwrap()
        };
        let product = |out: Form| {
            heads_matmul(
                (a.as_tensor(), Form::PLAIN),
                (b0.as_tensor(), Form::PLAIN.t()),
                out,
                1.0,
                2,
                3,
            )
            .unwrap()
        };
        let (fused, ga, gb) = with_matmul_precision(MatmulPrecision::Bf16, || {
            let y = product(Form::PLAIN);
            let gs = grads_of(&y, &g);
            (y, gs.get(&a).unwrap().clone(), gs.get(&b0).unwrap().clone())
        });
        // f32 products of rounded operands: the same up to the order of the f32 sums
        let (ar, btr, gr) = (round(a.as_tensor()), round(&bt), round(&g));
        assert!(max_abs_diff(&fused, &ar.matmul(&btr).unwrap()) < 1e-4);
        let ga_ref = gr.matmul(&btr.t().unwrap()).unwrap();
        let gb_ref = gr.t().unwrap().matmul(&ar).unwrap();
        assert!(
            max_abs_diff(&ga, &ga_ref) < 1e-4,
            "{}",
            max_abs_diff(&ga, &ga_ref)
        );
        assert!(
            max_abs_diff(&gb, &gb_ref) < 1e-4,
            "{}",
            max_abs_diff(&gb, &gb_ref)
        );
        // and it is not the f32 product
        assert!(max_abs_diff(&fused, &a.as_tensor().matmul(&bt).unwrap()) > 1e-4);
        // a packed store rounds the same way
        let packed = with_matmul_precision(MatmulPrecision::Bf16, || product(Form::PACKED));
        let packed = logical(&packed, Form::PACKED, (2, 3, 5, 6));
        assert!(max_abs_diff(&packed, &fused) < 1e-6);
    }
}
