//! f32 matrix products split over rayon's threads by blocks of rows, for the dense layers of
//! forge-lora and forge-models.
//!
//! The `gemm` crate (which candle's CPU matmul calls) parallelises inside one product but
//! packs its left-hand operand on the calling thread first: in a MiniLM forward that serial
//! packing, plus the serial start-from-bias copy of the fused linear layer, kept one of the two
//! cores idle for ~20 ms a forward. Here each thread takes its own block of rows of `C`,
//! starts it (zeros, the bias, or its current values) and runs a single-threaded `gemm` on it,
//! so packing and start-up run in parallel too. The blocks write disjoint rows, so the result
//! does not depend on the thread count (each row's sums run in the same order).
//!
//! The algorithm is the blocked GEMM of Goto & van de Geijn (2008), "Anatomy of
//! High-Performance Matrix Multiplication", as implemented by the `gemm` crate; this module
//! only decides how the rows are shared out.

use crate::bf16::{mat_from_layout, MatRef};
use crate::{LinalgError, Result};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// What `C` holds before the product is added to it.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// `C = A B` (C's previous contents are ignored).
    Zero,
    /// `C += A B`.
    Keep,
    /// `C = A B + 1 r` (each row starts as `r`: a linear layer's bias), `r.len() == n`.
    Rows(&'a [f32]),
}

/// Below this many multiply-adds a product runs on one thread (splitting costs more).
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// The row blocks for `m` rows on `threads` threads: one block per thread, at least 8 rows.
fn block_rows(m: usize, n: usize, k: usize, threads: usize) -> usize {
    if threads <= 1 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_MIN_FLOPS {
        return m.max(1);
    }
    m.div_ceil(threads).max(8)
}

/// `C (+)= A B` with `A` `m x k`, `B` `k x n` (any strides: transposes are views) and `C` row
/// major `m x n` in `c`, on up to `threads` of rayon's threads (see the module docs).
///
/// # Errors
/// [`LinalgError::InvalidArgument`] when the inner dimensions differ, `c` does not hold
/// `m * n` values, or a [`Start::Rows`] row is not `n` long.
pub fn gemm_f32(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    start: Start<'_>,
    threads: usize,
) -> Result<()> {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and an initialised f32 is a valid
    // `MaybeUninit<f32>`; the blocks only write f32 values into it.
    let c = unsafe { &mut *(c as *mut [f32] as *mut [MaybeUninit<f32>]) };
    gemm_f32_uninit(a, b, c, start, threads)
}

/// [`gemm_f32`] into possibly uninitialised memory: `c` must be initialised for
/// [`Start::Keep`]; with [`Start::Zero`] or [`Start::Rows`] every value is written.
///
/// # Errors
/// As [`gemm_f32`].
pub(crate) fn gemm_f32_uninit(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [MaybeUninit<f32>],
    start: Start<'_>,
    threads: usize,
) -> Result<()> {
    let (m, n) = check(a, b, start)?;
    if c.len() != m * n {
        return Err(LinalgError::InvalidArgument {
            name: "gemm output",
            reason: format!("{m} x {n} needs {} values, got {}", m * n, c.len()),
        });
    }
    run_blocks(a, b, c, start, threads);
    Ok(())
}

/// `A B` (plus each row starting at `start`'s row, if [`Start::Rows`]) into a new row-major
/// `m x n` vector, without first zeroing it (each block writes its own rows).
///
/// # Errors
/// As [`gemm_f32`]; [`Start::Keep`] is refused (there is nothing to keep).
pub fn gemm_f32_new(
    a: MatRef<'_>,
    b: MatRef<'_>,
    start: Start<'_>,
    threads: usize,
) -> Result<Vec<f32>> {
    if matches!(start, Start::Keep) {
        return Err(LinalgError::InvalidArgument {
            name: "gemm start",
            reason: "a new output has no values to keep".into(),
        });
    }
    let (m, n) = check(a, b, start)?;
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    run_blocks(a, b, &mut out.spare_capacity_mut()[..m * n], start, threads);
    // SAFETY: run_blocks wrote every one of the m * n values (each row block starts its rows
    // from zeros or the bias row, or the GEMM writes them without reading).
    unsafe { out.set_len(m * n) };
    Ok(out)
}

struct Matmul;

impl CustomOp2 for Matmul {
    fn name(&self) -> &'static str {
        "forge-f32-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = mat_from_layout(s1, l1, "f32 matmul lhs")?;
        let b = mat_from_layout(s2, l2, "f32 matmul rhs")?;
        let threads = candle_core::utils::get_num_threads();
        let c = gemm_f32_new(a, b, Start::Zero, threads)
            .map_err(|e| candle_core::Error::Msg(format!("f32 matmul: {e}")))?;
        Ok((CpuStorage::F32(c), Shape::from((a.rows(), b.cols()))))
    }
}

/// `a · b` for 2-D tensors `[m, k] x [k, n]` (any strides, e.g. transposed views): through
/// [`gemm_f32_new`] for f32 on the CPU, candle's `matmul` otherwise. Not differentiable: for
/// the backward passes of ops that define their own.
///
/// # Errors
/// Ranks other than 2, mismatched inner dimensions, candle errors.
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 2;
    if f32_cpu(a) && f32_cpu(b) {
        a.apply_op2_no_bwd(b, &Matmul)
    } else {
        a.matmul(b)
    }
}

fn check(a: MatRef<'_>, b: MatRef<'_>, start: Start<'_>) -> Result<(usize, usize)> {
    if a.cols() != b.rows() {
        return Err(LinalgError::InvalidArgument {
            name: "gemm operands",
            reason: format!(
                "{} x {} times {} x {}: inner dimensions differ",
                a.rows(),
                a.cols(),
                b.rows(),
                b.cols()
            ),
        });
    }
    if let Start::Rows(r) = start {
        if r.len() != b.cols() {
            return Err(LinalgError::InvalidArgument {
                name: "gemm start row",
                reason: format!("{} values for {} columns", r.len(), b.cols()),
            });
        }
    }
    Ok((a.rows(), b.cols()))
}

fn run_blocks(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [MaybeUninit<f32>],
    start: Start<'_>,
    threads: usize,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    if m == 0 || n == 0 {
        return;
    }
    let rows = block_rows(m, n, k, threads);
    let block = |i0: usize, dst: &mut [MaybeUninit<f32>]| {
        let mb = dst.len() / n;
        let read_dst = match start {
            Start::Keep => true,
            Start::Rows(r) => {
                for row in dst.chunks_exact_mut(n) {
                    for (d, &v) in row.iter_mut().zip(r) {
                        d.write(v);
                    }
                }
                true
            }
            Start::Zero => {
                if k == 0 {
                    dst.fill(MaybeUninit::new(0.0));
                }
                false
            }
        };
        if k == 0 {
            return;
        }
        let (ad, ars, acs) = a.raw();
        let (bd, brs, bcs) = b.raw();
        // SAFETY: `MatRef` checked that (m-1) rs + (k-1) cs (and likewise for B) lies within
        // its data, so rows i0..i0+mb of A and all of B are in bounds; `dst` holds mb * n
        // values, row stride n, this block's alone. Without read_dst the product writes every
        // value of dst without reading it (the uninitialised case); with it, dst was
        // initialised above or by the caller.
        unsafe {
            small_gemm(
                (mb, n, k),
                (dst.as_mut_ptr() as *mut f32, n, 1),
                (ad.as_ptr().add(i0 * ars), ars, acs),
                (bd.as_ptr(), brs, bcs),
                1.0,
                read_dst,
            )
        }
    };
    if rows >= m {
        block(0, c);
    } else {
        c.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(i, dst)| block(i * rows, dst));
    }
}

/// `C = alpha A B` (or `C += alpha A B` with `accumulate`) as one product on the calling thread
/// (a block of [`gemm_f32`]'s rows, or one of attention's per-head products), each matrix given
/// by its start and (row, column) strides: through MKL's `cblas_sgemm` when
/// [`crate::mkl::active`] and the three are BLAS layouts (C with unit column stride), else the
/// `gemm` crate, unthreaded. `k == 0` writes zeros (leaves `C` as it is with `accumulate`).
///
/// # Safety
/// Every element `p + i rs + j cs` of the three matrices must lie in its live allocation, `C`'s
/// elements must be distinct (`rs`, `cs` not both zero unless `m` or `n` is 1) and no other
/// thread may access them meanwhile. Without `accumulate` `C` may be uninitialised (it is
/// written, never read); with it, `C` must be initialised.
#[allow(clippy::type_complexity)]
pub unsafe fn small_gemm(
    (m, n, k): (usize, usize, usize),
    c: (*mut f32, usize, usize),
    a: (*const f32, usize, usize),
    b: (*const f32, usize, usize),
    alpha: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 || (k == 0 && accumulate) {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: element (i, j) of C lies in its allocation (the caller's contract).
                unsafe { c.0.add(i * c.1 + j * c.2).write(0.0) };
            }
        }
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some(mkl) = crate::mkl::active() {
        if let (Some((ta, lda)), Some((tb, ldb)), true) = (
            blas_layout(m, k, a.1, a.2),
            blas_layout(k, n, b.1, b.2),
            c.2 == 1 && c.1 >= n,
        ) {
            if [m, n, k, lda, ldb, c.1]
                .iter()
                .all(|&d| d <= i32::MAX as usize)
            {
                // SAFETY: blas_layout checked that A's and B's strides are BLAS layouts of the
                // same elements, C is row major with row stride c.1 >= n; with beta 0 BLAS
                // writes every value of C without reading it; the caller vouches for bounds
                // (and for C's values when it accumulates).
                let beta = if accumulate { 1.0 } else { 0.0 };
                unsafe {
                    mkl.gemm_ld(
                        m,
                        n,
                        k,
                        alpha,
                        (a.0, lda, ta),
                        (b.0, ldb, tb),
                        beta,
                        (c.0, c.1),
                    )
                };
                return;
            }
        }
    }
    // SAFETY: forwarded from the caller; without accumulate (read_dst false) the GEMM writes
    // every value of C without reading it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            c.2 as isize,
            c.1 as isize,
            accumulate,
            a.0,
            a.2 as isize,
            a.1 as isize,
            b.0,
            b.2 as isize,
            b.1 as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// How BLAS reads a `rows x cols` view with strides `(rs, cs)`: `(false, ld)` when rows are
/// contiguous (`cs == 1`, leading dimension `ld = rs`), `(true, ld)` when columns are (stored
/// transposed, `ld = cs`); `None` when neither (the `gemm` crate takes those). Degenerate
/// extents of 1 take whichever stride makes a valid leading dimension.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn blas_layout(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
    if cols == 1 || cs == 1 {
        let ld = if rows == 1 { cols } else { rs };
        if ld >= cols.max(1) {
            return Some((false, ld));
        }
    }
    if rows == 1 || rs == 1 {
        let ld = if cols == 1 { rows } else { cs };
        if ld >= rows.max(1) {
            return Some((true, ld));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f64> {
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a.at(i, l) as f64 * b.at(l, j) as f64).sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn close(got: &[f32], want: &[f64], k: usize) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * (k as f64 + 1.0),
                "{g} vs {w}"
            );
        }
    }

    #[test]
    fn matches_the_naive_product_on_every_start_and_split() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 5, 3),
            (64, 33, 17),
            (129, 70, 65),
            (300, 64, 40),
        ] {
            let ad = data(m * k, 1);
            let bd = data(k * n, 2);
            let a = MatRef::row_major(&ad, m, k).unwrap();
            // B stored transposed (n x k) and read as a view, as a linear layer's weight
            let bt: Vec<f32> = (0..n * k).map(|i| bd[(i % k) * n + i / k]).collect();
            let b = MatRef::row_major(&bt, n, k).unwrap().t();
            let want = naive(a, b);
            let bias = data(n, 3);
            for threads in [1, 2, 3] {
                let got = gemm_f32_new(a, b, Start::Zero, threads).unwrap();
                close(&got, &want, k);
                let got = gemm_f32_new(a, b, Start::Rows(&bias), threads).unwrap();
                let with_bias: Vec<f64> = want
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w + bias[i % n] as f64)
                    .collect();
                close(&got, &with_bias, k);
                let mut kept = vec![1.5f32; m * n];
                gemm_f32(a, b, &mut kept, Start::Keep, threads).unwrap();
                let plus: Vec<f64> = want.iter().map(|w| w + 1.5).collect();
                close(&kept, &plus, k);
                let mut zero = vec![f32::NAN; m * n];
                gemm_f32(a, b, &mut zero, Start::Zero, threads).unwrap();
                close(&zero, &want, k);
            }
        }
    }

    /// `small_gemm` on every combination of row-major / transposed operands and a destination
    /// held by rows (BLAS-able: MKL when `FORGE_MKL` loaded it) or by columns (the gemm crate),
    /// inside wider storages (row strides past the extents), with a scale; and `k == 0`.
    #[test]
    fn small_gemm_matches_the_naive_product_on_every_layout() {
        let (m, k, n) = (19, 13, 7);
        let (lda, ldb, ldc) = (k + 3, n + 2, n + 5);
        for (ta, tb, tc) in (0..8).map(|i| (i & 1 == 1, i & 2 == 2, i & 4 == 4)) {
            // each operand stored with padding: row major (rs = ld, cs = 1) or transposed
            let (ad, a_rs, a_cs) = if ta {
                (data(k * (m + 3), 7), 1, m + 3)
            } else {
                (data(m * lda, 7), lda, 1)
            };
            let (bd, b_rs, b_cs) = if tb {
                (data(n * (k + 2), 8), 1, k + 2)
            } else {
                (data(k * ldb, 8), ldb, 1)
            };
            let a = MatRef::new(&ad, m, k, a_rs, a_cs).unwrap();
            let b = MatRef::new(&bd, k, n, b_rs, b_cs).unwrap();
            let want: Vec<f64> = naive(a, b).iter().map(|w| 0.5 * w).collect();
            let (c_rs, c_cs, len) = if tc {
                (1, m + 1, n * (m + 1))
            } else {
                (ldc, 1, m * ldc)
            };
            let mut c = vec![f32::NAN; len];
            // SAFETY: every (i, j) of the three views lies in its vector (checked by MatRef for A
            // and B; C's strides cover m x n within len), and the test owns them all.
            unsafe {
                small_gemm(
                    (m, n, k),
                    (c.as_mut_ptr(), c_rs, c_cs),
                    (ad.as_ptr(), a_rs, a_cs),
                    (bd.as_ptr(), b_rs, b_cs),
                    0.5,
                    false,
                )
            };
            let got: Vec<f32> = (0..m * n)
                .map(|x| c[(x / n) * c_rs + (x % n) * c_cs])
                .collect();
            close(&got, &want, k);
        }
        let mut c = vec![f32::NAN; 6];
        // SAFETY: a 2 x 3 row-major C in 6 values; A and B are never read (k = 0).
        unsafe {
            small_gemm(
                (2, 3, 0),
                (c.as_mut_ptr(), 3, 1),
                (std::ptr::null(), 0, 1),
                (std::ptr::null(), 3, 1),
                1.0,
                false,
            )
        };
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn same_bits_on_any_thread_count() {
        let (m, k, n) = (256, 96, 80);
        let ad = data(m * k, 4);
        let bd = data(k * n, 5);
        let a = MatRef::row_major(&ad, m, k).unwrap();
        let b = MatRef::row_major(&bd, k, n).unwrap();
        let one = gemm_f32_new(a, b, Start::Zero, 1).unwrap();
        for threads in [2, 3, 4] {
            assert_eq!(one, gemm_f32_new(a, b, Start::Zero, threads).unwrap());
        }
    }

    #[test]
    fn empty_and_zero_depth_products() {
        let ad: Vec<f32> = vec![];
        let a = MatRef::row_major(&ad, 4, 0).unwrap();
        let b = MatRef::row_major(&ad, 0, 3).unwrap();
        assert_eq!(gemm_f32_new(a, b, Start::Zero, 2).unwrap(), vec![0.0; 12]);
        let r = [1.0, 2.0, 3.0];
        let got = gemm_f32_new(a, b, Start::Rows(&r), 2).unwrap();
        assert_eq!(&got[..3], &r);
        let a0 = MatRef::row_major(&ad, 0, 5).unwrap();
        let b0 = MatRef::row_major(&ad, 5, 0).unwrap();
        assert!(gemm_f32_new(a0, b0, Start::Zero, 2).unwrap().is_empty());
    }

    #[test]
    fn tensor_matmul_matches_candle_on_views() {
        use candle_core::Device;
        let dev = Device::Cpu;
        let a = Tensor::from_vec(data(40 * 24, 7), (40, 24), &dev).unwrap();
        let b = Tensor::from_vec(data(30 * 24, 8), (30, 24), &dev).unwrap();
        let bt = b.t().unwrap();
        let got = matmul(&a, &bt).unwrap();
        let want = a.matmul(&bt).unwrap();
        let d = crate::ops::max_abs_diff(&got, &want).unwrap();
        assert!(d < 1e-4, "{d}");
        // transposed left operand too, and f64 through candle
        let got = matmul(&a.t().unwrap(), &a).unwrap();
        assert_eq!(got.dims(), &[24, 24]);
        let a64 = a.to_dtype(DType::F64).unwrap();
        assert_eq!(matmul(&a64.t().unwrap(), &a64).unwrap().dtype(), DType::F64);
        assert!(matmul(&a, &a).is_err());
    }

    #[test]
    fn blas_layouts_of_views() {
        // row major, with padding, transposed, degenerate and unrepresentable views
        assert_eq!(blas_layout(4, 3, 3, 1), Some((false, 3)));
        assert_eq!(blas_layout(4, 3, 5, 1), Some((false, 5)));
        assert_eq!(blas_layout(4, 3, 1, 4), Some((true, 4)));
        assert_eq!(blas_layout(1, 3, 0, 7), Some((true, 7)));
        assert_eq!(blas_layout(4, 1, 2, 9), Some((false, 2)));
        assert_eq!(blas_layout(1, 1, 0, 0), Some((false, 1)));
        assert_eq!(blas_layout(4, 3, 2, 1), None); // rows overlap
        assert_eq!(blas_layout(4, 3, 6, 2), None); // no unit stride
        assert_eq!(blas_layout(4, 3, 0, 1), None); // broadcast rows
    }

    #[test]
    fn bad_shapes_are_errors() {
        let d = data(12, 6);
        let a = MatRef::row_major(&d, 3, 4).unwrap();
        let b = MatRef::row_major(&d, 3, 4).unwrap();
        assert!(gemm_f32_new(a, b, Start::Zero, 2).is_err());
        let b = MatRef::row_major(&d, 4, 3).unwrap();
        assert!(gemm_f32_new(a, b, Start::Rows(&[1.0]), 2).is_err());
        assert!(gemm_f32_new(a, b, Start::Keep, 2).is_err());
        let mut short = vec![0f32; 8];
        assert!(gemm_f32(a, b, &mut short, Start::Zero, 2).is_err());
    }
}
