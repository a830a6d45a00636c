//! A matmul with a frozen right-hand side whose backward pass computes only the input gradient.
//!
//! candle's matmul backward always computes both operand gradients, even when the weight is a
//! constant; for a LoRA step that is one wasted `[in, out]` product per frozen linear layer.
//! `y = x W^T` is computed without tracking, then re-attached to `x`'s graph through a custom op
//! whose forward copies `y` and whose backward returns `dL/dx = (dL/dy) W` only.
//!
//! In the bf16 mixed-precision mode ([`forge_linalg::bf16::matmul_precision`]) the products
//! of these ops, forward and backward, take bf16 operands with f32 accumulation
//! ([`forge_linalg::bf16::gemm_bf16`]); their inputs, outputs and gradients stay f32. The
//! precision is read when the forward op is built and kept for its backward pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use forge_linalg::bf16::{self, MatmulPrecision};
use forge_linalg::sgemm;

/// Whether the bf16 mode is on for f32 CPU operands.
fn bf16_mode(ts: &[&Tensor]) -> bool {
    bf16::matmul_precision() == MatmulPrecision::Bf16
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.rank() == 2)
}

/// `a b` (not differentiable): in bf16 with f32 accumulation when `bf16`, else split over the
/// threads by row blocks ([`sgemm::matmul`]; candle's matmul for f64).
fn product(a: &Tensor, b: &Tensor, bf16: bool) -> candle_core::Result<Tensor> {
    if bf16 {
        bf16::matmul(a, b)
    } else {
        sgemm::matmul(a, b)
    }
}

struct FrozenRhsGrad {
    w: Tensor,
    bf16: bool,
}

impl CustomOp2 for FrozenRhsGrad {
    fn name(&self) -> &'static str {
        "frozen-rhs-matmul"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = l2.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg("frozen-rhs-matmul: product must be contiguous".into())
        })?;
        let out = match s2 {
            CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
            _ => {
                return Err(candle_core::Error::Msg(
                    "frozen-rhs-matmul: only f32 / f64".into(),
                ))
            }
        };
        Ok((out, l2.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(product(grad, &self.w, self.bf16)?), None))
    }
}

/// `x W^T` for a 2-D `x` `[n, in]` and a frozen `w` `[out, in]`; the backward pass yields the
/// gradient of `x` only. Falls back to a plain matmul off the CPU, for other dtypes, or when `x`
/// is not tracked.
///
/// # Errors
/// Candle shape errors.
pub(crate) fn frozen_matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let eligible = x.track_op()
        && !w.track_op()
        && x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
    let bf16 = bf16_mode(&[x, w]);
    if !eligible {
        // without tracked operands no backward pass is needed: the bf16 product may serve
        let untracked = !x.track_op() && !w.track_op();
        return product(x, &w.t()?, bf16 && untracked);
    }
    let y = product(&x.detach(), &w.t()?, bf16)?;
    x.apply_op2(&y, FrozenRhsGrad { w: w.clone(), bf16 })
}

struct FusedLinear {
    bf16: bool,
}

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "forge-linear"
    }

    /// x `[n, in]`, w `[out, in]`, b `[out]` -> `x w^T + b`, one GEMM that starts from the bias.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use forge_linalg::ops::contiguous_f32;
        let x = contiguous_f32(s1, l1, "forge-linear input")?;
        let w = contiguous_f32(s2, l2, "forge-linear weight")?;
        let b = contiguous_f32(s3, l3, "forge-linear bias")?;
        let (n, k) = l1.shape().dims2()?;
        let (out, k2) = l2.shape().dims2()?;
        if k != k2 || b.len() != out {
            candle_core::bail!(
                "forge-linear: input {:?}, weight {:?}, bias {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            )
        }
        let xm = bf16::MatRef::row_major(x, n, k);
        let wm = bf16::MatRef::row_major(w, out, k);
        let y = xm
            .and_then(|xm| {
                wm.and_then(|wm| {
                    if self.bf16 {
                        // each block of C is stored once, plus the bias
                        bf16::Bf16Gemm::new().run_new(xm, wm.t(), Some(b))
                    } else {
                        // row blocks over the threads, each starting from the bias
                        let threads = candle_core::utils::get_num_threads();
                        sgemm::gemm_f32_new(xm, wm.t(), sgemm::Start::Rows(b), threads)
                    }
                })
            })
            .map_err(|e| candle_core::Error::Msg(format!("forge-linear: {e}")))?;
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gx = x
            .track_op()
            .then(|| product(grad, w, self.bf16))
            .transpose()?;
        let gw = w
            .track_op()
            .then(|| product(&grad.t()?, x, self.bf16))
            .transpose()?;
        let gb = b.track_op().then(|| column_sums(grad)).transpose()?;
        Ok((gx, gw, gb))
    }
}

/// The column sums of a 2-D f32 CPU tensor `[n, out]` -> `[out]`, row after row into one
/// accumulator row (vectorised, one pass over contiguous memory): the bias gradient. candle's
/// `sum(0)` reduces each column with a strided walk (about 8 % of a MiniLM Fisher batch). Other
/// dtypes and devices take `sum(0)`. Not differentiable (a backward-pass helper).
fn column_sums(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.rank() == 2 {
        t.contiguous()?.apply_op1_no_bwd(&ColumnSums)
    } else {
        t.sum(0)
    }
}

struct ColumnSums;

/// Rows per partial sum of [`column_sums_f32`]: a fixed block, so that the sums do not depend
/// on the thread count.
const SUM_ROWS: usize = 128;

/// Column sums of a row-major `rows x out` matrix: partial sums over blocks of [`SUM_ROWS`]
/// rows in parallel (on a single thread it was ~1 % of a MiniLM Fisher batch with the other
/// core idle), then added block after block in order.
fn column_sums_f32(g: &[f32], rows: usize, out: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut acc = vec![0f32; out];
    if out == 0 || rows == 0 {
        return acc;
    }
    let add_rows = |acc: &mut [f32], block: &[f32]| {
        for row in block.chunks_exact(out) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    };
    if rows <= SUM_ROWS {
        add_rows(&mut acc, g);
        return acc;
    }
    let partials: Vec<Vec<f32>> = g
        .par_chunks(SUM_ROWS * out)
        .map(|block| {
            let mut p = vec![0f32; out];
            add_rows(&mut p, block);
            p
        })
        .collect();
    for p in &partials {
        for (a, &v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    acc
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "forge-column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = forge_linalg::ops::contiguous_f32(s, l, "forge-column-sums input")?;
        let (rows, out) = l.shape().dims2()?;
        Ok((
            CpuStorage::F32(column_sums_f32(g, rows, out)),
            Shape::from(out),
        ))
    }
}

/// `x W^T + b` for a 2-D `x` `[n, in]` as one GEMM starting from the bias (no separate bias
/// pass, no copy), with a backward pass that computes the gradients of the tracked operands
/// only (a frozen weight gets none); in bf16 mode its three products use bf16 operands with
/// f32 accumulation. `None` when it does not apply (not f32 on the CPU), for
/// the caller's candle-op path.
///
/// # Errors
/// Candle shape errors.
pub(crate) fn fused_linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && matches!(t.dtype(), candle_core::DType::F32);
    if !(f32_cpu(x) && f32_cpu(w) && f32_cpu(b)) || x.rank() != 2 || w.rank() != 2 {
        return Ok(None);
    }
    let bf16 = bf16_mode(&[x, w]);
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, FusedLinear { bf16 })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn same_value_and_input_gradient_as_plain_matmul() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.0f32, 2.0, 3.0], [-1.0, 0.5, 0.0]], &dev).unwrap();
        let w = Tensor::new(&[[0.1f32, 0.2, 0.3], [0.4, -0.5, 0.6]], &dev).unwrap();
        let a = frozen_matmul_t(x.as_tensor(), &w).unwrap();
        let b = x.as_tensor().matmul(&w.t().unwrap()).unwrap();
        // the same product up to the summation order of the GEMM backend (forge_linalg::mkl)
        let near = |p: &Tensor, q: &Tensor| {
            let d = forge_linalg::ops::max_abs_diff(p, q).unwrap();
            assert!(d <= 1e-6, "{d}");
        };
        near(&a, &b);
        let ga = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gb = b.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        near(ga, gb);
    }

    #[test]
    fn column_sums_over_many_blocks_match_f64_and_any_thread_count() {
        // 3 full blocks of SUM_ROWS rows and a partial one
        let (rows, out) = (3 * SUM_ROWS + 5, 19);
        let g: Vec<f32> = (0..rows * out)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 1e-3)
            .collect();
        let want: Vec<f64> = (0..out)
            .map(|j| (0..rows).map(|i| g[i * out + j] as f64).sum())
            .collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let a = one.install(|| column_sums_f32(&g, rows, out));
        let b = three.install(|| column_sums_f32(&g, rows, out));
        assert_eq!(a, b, "the sums depend on the thread count");
        for (x, w) in a.iter().zip(&want) {
            assert!((*x as f64 - w).abs() < 1e-4, "{x} vs {w}");
        }
        assert_eq!(column_sums_f32(&[], 0, 4), vec![0.0; 4]);
        assert!(column_sums_f32(&[], 5, 0).is_empty());
    }

    #[test]
    fn column_sums_match_candle_sum() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..7 * 37)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.37)
            .collect();
        let t = Tensor::from_vec(v, (7, 37), &dev).unwrap();
        let ours = column_sums(&t).unwrap().to_vec1::<f32>().unwrap();
        let theirs = t.sum(0).unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // a transposed (strided) input is made contiguous first
        let tt = t.t().unwrap();
        let ours = column_sums(&tt).unwrap().to_vec1::<f32>().unwrap();
        let theirs = tt.sum(0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(ours.len(), 7);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn fused_linear_matches_matmul_plus_bias_with_every_gradient() {
        let dev = Device::Cpu;
        let x = Var::new(&[[1.0f32, 2.0, 3.0], [-1.0, 0.5, 0.0]], &dev).unwrap();
        let w = Var::new(&[[0.1f32, 0.2, 0.3], [0.4, -0.5, 0.6]], &dev).unwrap();
        let b = Var::new(&[0.25f32, -1.0], &dev).unwrap();
        let fused = fused_linear(x.as_tensor(), w.as_tensor(), b.as_tensor())
            .unwrap()
            .expect("f32 on the CPU");
        let plain = x
            .as_tensor()
            .matmul(&w.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        let (fv, pv) = (
            fused.to_vec2::<f32>().unwrap(),
            plain.to_vec2::<f32>().unwrap(),
        );
        for (a, p) in fv.iter().flatten().zip(pv.iter().flatten()) {
            assert!((a - p).abs() < 1e-6, "{a} vs {p}");
        }
        let gf = fused.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            let (a, p) = (gf.get(v).unwrap(), gp.get(v).unwrap());
            let d: f32 = (a - p)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-5, "gradient differs by {d}");
        }
        // a frozen weight and bias get no gradient
        let wf = w.as_tensor().detach();
        let bf = b.as_tensor().detach();
        let y = fused_linear(x.as_tensor(), &wf, &bf).unwrap().unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&wf).is_none() && g.get(&bf).is_none());
        // f64 is left to the caller
        let x64 = x.as_tensor().to_dtype(candle_core::DType::F64).unwrap();
        assert!(fused_linear(&x64, &wf, &bf).unwrap().is_none());
    }

    /// `a b` in f64 of the bf16-rounded operands (row-major `Vec`s).
    fn rounded_product(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f64>> {
        use forge_linalg::bf16::round_to_bf16 as r;
        a.iter()
            .map(|row| {
                (0..b[0].len())
                    .map(|j| {
                        row.iter()
                            .zip(b)
                            .map(|(&x, bk)| r(x) as f64 * r(bk[j]) as f64)
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    fn transpose(a: &[Vec<f32>]) -> Vec<Vec<f32>> {
        (0..a[0].len())
            .map(|j| a.iter().map(|row| row[j]).collect())
            .collect()
    }

    fn assert_close(got: &Tensor, want: &[Vec<f64>], plus: Option<&[f32]>, what: &str) {
        // bf16 products are exact in f32: only the f32 sum of 37 terms of size ~1 is rounded
        for (i, row) in got.to_vec2::<f32>().unwrap().iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let w = want[i][j] + plus.map_or(0.0, |b| b[j] as f64);
                assert!((v as f64 - w).abs() < 1e-4, "{what}[{i}][{j}]: {v} vs {w}");
            }
        }
    }

    #[test]
    fn bf16_mode_rounds_the_operands_of_every_product() {
        use forge_linalg::bf16::{with_matmul_precision, MatmulPrecision};
        let dev = Device::Cpu;
        let mut rng = forge_linalg::seeded_rng(3);
        let mut randn = |r: usize, c: usize| {
            forge_linalg::rng::randn(&[r, c], candle_core::DType::F32, &dev, &mut rng).unwrap()
        };
        let (x, w, b, gy) = (randn(5, 37), randn(7, 37), randn(1, 7), randn(5, 7));
        let (x, w) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
        let b = Var::from_tensor(&b.squeeze(0).unwrap()).unwrap();
        let v2 = |t: &Tensor| t.to_vec2::<f32>().unwrap();
        let (xv, wv, gv) = (v2(&x), v2(&w), v2(&gy));
        let bv = b.to_vec1::<f32>().unwrap();
        with_matmul_precision(MatmulPrecision::Bf16, || {
            let y = fused_linear(&x, &w, &b).unwrap().unwrap();
            assert_close(&y, &rounded_product(&xv, &transpose(&wv)), Some(&bv), "y");
            let g = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(g.get(&x).unwrap(), &rounded_product(&gv, &wv), None, "gx");
            let gw = rounded_product(&transpose(&gv), &xv);
            assert_close(g.get(&w).unwrap(), &gw, None, "gw");

            let y = frozen_matmul_t(&x, &w.as_tensor().detach()).unwrap();
            assert_close(&y, &rounded_product(&xv, &transpose(&wv)), None, "frozen y");
            let g = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(
                g.get(&x).unwrap(),
                &rounded_product(&gv, &wv),
                None,
                "frozen gx",
            );
        });
        // and the f32 mode is the plain product, not the rounded one
        let y = with_matmul_precision(MatmulPrecision::F32, || {
            frozen_matmul_t(&x, &w.as_tensor().detach()).unwrap()
        });
        let plain = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        // equal up to the GEMM backend's summation order (1e-6), far below bf16's rounding
        let d = forge_linalg::ops::max_abs_diff(&y, &plain).unwrap();
        assert!(d <= 1e-5, "{d}");
    }
}
