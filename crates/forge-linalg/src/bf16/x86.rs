//! The x86-64 kernels of [`super`]: packing into bf16 panels, the AMX tile micro-kernel
//! (`core::arch::asm!`, AMX intrinsics being unstable) and the AVX512-BF16 one
//! (`_mm512_dpbf16_ps`), and the loop that splits C over rayon's threads.

use super::*;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Packs A (m x k) into row blocks of MB rows, row-major with row stride `kp`.
fn pack_a(a: MatRef<'_>, kp: usize, out: &mut [u16], par: bool) {
    let block = |(ib, dst): (usize, &mut [u16])| {
        let i0 = ib * MB;
        let rows = MB.min(a.rows - i0);
        if a.col_stride == 1 || a.col_stride <= a.row_stride {
            for r in 0..rows {
                let d = &mut dst[r * kp..r * kp + a.cols];
                for (kk, v) in d.iter_mut().enumerate() {
                    *v = f32_to_bf16_bits(a.at(i0 + r, kk));
                }
            }
        } else {
            // rows are the contiguous direction: read along them, in L1-sized k chunks
            for k0 in (0..a.cols).step_by(64) {
                for kk in k0..(k0 + 64).min(a.cols) {
                    for r in 0..rows {
                        dst[r * kp + kk] = f32_to_bf16_bits(a.at(i0 + r, kk));
                    }
                }
            }
        }
    };
    if par {
        out.par_chunks_mut(MB * kp).enumerate().for_each(block);
    } else {
        out.chunks_mut(MB * kp).enumerate().for_each(block);
    }
}

/// Packs B (k x n) into panels of NB columns, `[kp / 2][NB][2]` each.
fn pack_b(b: MatRef<'_>, kp: usize, out: &mut [u16], par: bool) {
    let panel = |(jp, dst): (usize, &mut [u16])| {
        let j0 = jp * NB;
        let cols = NB.min(b.cols - j0);
        let k = b.rows;
        if b.row_stride < b.col_stride {
            // columns are contiguous (B = W^T of a row-major W)
            for c in 0..cols {
                for kk in 0..k {
                    dst[(kk / 2) * 2 * NB + c * 2 + (kk & 1)] = f32_to_bf16_bits(b.at(kk, j0 + c));
                }
            }
        } else {
            for kk in 0..k {
                let base = (kk / 2) * 2 * NB + (kk & 1);
                for c in 0..cols {
                    dst[base + c * 2] = f32_to_bf16_bits(b.at(kk, j0 + c));
                }
            }
        }
    };
    if par {
        out.par_chunks_mut(NB * kp).enumerate().for_each(panel);
    } else {
        out.chunks_mut(NB * kp).enumerate().for_each(panel);
    }
}

/// 64-byte AMX tile configuration (palette 1): tmm0-3 accumulate C (16 rows x 16 f32),
/// tmm4-5 hold A (16 rows x 32 bf16), tmm6-7 hold B (16 k-pairs x 16 columns x 2 bf16).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn tile_config() -> TileConfig {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette
    for t in 0..8 {
        cfg[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
        cfg[48 + t] = 16; // rows
    }
    TileConfig(cfg)
}

/// The 32 x 32 block of C from a 32-row block of A (`a`, row stride `kp`) and a 32-column
/// panel of B (`b`), into `out` (row-major, 32 x 32).
///
/// # Safety
/// The AMX tile state was requested ([`amx_available`] is true), the thread's tiles are
/// configured with [`tile_config`], `a` points to 32 rows of `kp` bf16, `b` to `kp * 32`
/// bf16, and `kp` is a positive multiple of 32.
#[inline(always)]
unsafe fn amx_block(a: *const u16, kp: usize, b: *const u16, out: &mut [f32; MB * NB]) {
    let lda = kp * 2; // bytes per A row
    let a_lo = a;
    // SAFETY (pointer arithmetic): rows 16..32 of the 32-row block.
    let a_hi = unsafe { a.add(16 * kp) };
    let steps = kp / KB;
    // SAFETY: per the caller's contract; each step reads 16 rows of 64 bytes of A at
    // stride lda from a_lo/a_hi + 64 * step, and 16 rows of 64 bytes of B at stride 128
    // from b (+ 64) + 2048 * step, all within the packed blocks; stores write 4 x 16 rows
    // of 64 bytes at stride 128 into `out` (32 x 32 f32 = 4 KiB).
    unsafe {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{alo} + {lda}*1]",
            "tileloadd tmm6, [{b} + {ldb}*1]",
            "tileloadd tmm7, [{b} + {ldb}*1 + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{ahi} + {lda}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {alo}, 64",
            "add {ahi}, 64",
            "add {b}, 2048",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {ldb}*1], tmm0",
            "tilestored [{c} + {ldb}*1 + 64], tmm1",
            "tilestored [{c2} + {ldb}*1], tmm2",
            "tilestored [{c2} + {ldb}*1 + 64], tmm3",
            alo = inout(reg) a_lo => _,
            ahi = inout(reg) a_hi => _,
            b = inout(reg) b => _,
            n = inout(reg) steps => _,
            lda = in(reg) lda,
            ldb = in(reg) 2 * NB * 2,
            c = in(reg) out.as_mut_ptr(),
            c2 = in(reg) out.as_mut_ptr().add(16 * NB),
            options(nostack),
        );
    }
}

/// The 8 x 32 block of C from 8 rows of A (`a`, row stride `kp`) and a B panel.
///
/// # Safety
/// AVX512-BF16 and AVX512F are available; `a` points to 8 rows of `kp` bf16, `b` to
/// `kp * 32` bf16, `kp` is even, `out` has room for 8 rows of 32.
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn dp_block(a: *const u16, kp: usize, b: *const u16, out: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR_DP];
    for p in 0..kp / 2 {
        // SAFETY: p < kp / 2, so the loads stay in the B panel and the A rows.
        unsafe {
            let bp = b.add(p * 2 * NB);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(NB).cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = (a.add(r * kp + 2 * p) as *const i32).read_unaligned();
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        // SAFETY: out has 8 rows of 32 f32.
        unsafe {
            _mm512_storeu_ps(out.add(r * NB), acc_r[0]);
            _mm512_storeu_ps(out.add(r * NB + 16), acc_r[1]);
        }
    }
}

/// Writes (or adds) the valid part of a 32 x 32 block into C.
#[allow(clippy::too_many_arguments)]
fn store_block(
    blk: &[f32; MB * NB],
    c: &mut [f32],
    n: usize,
    r0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    accumulate: bool,
) {
    for r in 0..rows {
        let dst = &mut c[(r0 + r) * n + j0..(r0 + r) * n + j0 + cols];
        let src = &blk[r * NB..r * NB + cols];
        if accumulate {
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

pub(super) fn run(
    path: Bf16Path,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let kp = round_up(k, KB);
    let (mp, np) = (round_up(m, MB), round_up(n, NB));
    let par = threads > 1;
    let mut ap = vec![0u16; mp * kp];
    let mut bp = vec![0u16; np * kp];
    if par {
        rayon::join(
            || pack_a(a, kp, &mut ap, true),
            || pack_b(b, kp, &mut bp, true),
        );
    } else {
        pack_a(a, kp, &mut ap, false);
        pack_b(b, kp, &mut bp, false);
    }
    // rows of C per task: about four tasks per thread, whole A blocks
    let rows_per_task = if par {
        round_up(m.div_ceil(4 * threads), MB)
    } else {
        mp
    };
    let (ap, bp) = (&ap[..], &bp[..]);
    let task = |(t, c_rows): (usize, &mut [f32])| {
        let r_start = t * rows_per_task;
        let rows_here = c_rows.len() / n;
        let mut blk = [0f32; MB * NB];
        let amx = path == Bf16Path::Amx;
        if amx {
            let cfg = tile_config();
            // SAFETY: AMX was detected and the tile state granted (run is only called
            // with an available path); the configuration is a valid palette-1 layout.
            unsafe {
                std::arch::asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly))
            };
        }
        for j0 in (0..n).step_by(NC) {
            let j_end = (j0 + NC).min(n);
            for rb in (0..rows_here).step_by(MB) {
                let a_blk = &ap[(r_start + rb) * kp..(r_start + rb + MB) * kp];
                for jb in (j0..j_end).step_by(NB) {
                    let b_pan = &bp[jb * kp..(jb + NB) * kp];
                    if amx {
                        // SAFETY: tiles configured above; a_blk is 32 rows of kp bf16,
                        // b_pan is kp * 32 bf16, kp a positive multiple of 32.
                        unsafe { amx_block(a_blk.as_ptr(), kp, b_pan.as_ptr(), &mut blk) };
                    } else {
                        for r in (0..MB).step_by(MR_DP) {
                            // SAFETY: the path is available (checked by `run`), the
                            // pointers cover 8 rows of A and the panel, blk has 32 rows.
                            unsafe {
                                dp_block(
                                    a_blk.as_ptr().add(r * kp),
                                    kp,
                                    b_pan.as_ptr(),
                                    blk.as_mut_ptr().add(r * NB),
                                )
                            };
                        }
                    }
                    store_block(
                        &blk,
                        c_rows,
                        n,
                        rb,
                        MB.min(rows_here - rb),
                        jb,
                        NB.min(n - jb),
                        accumulate,
                    );
                }
            }
        }
        if amx {
            // SAFETY: releases this thread's tile state (no operands).
            unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
        }
    };
    if par {
        c.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(task);
    } else {
        task((0, c));
    }
}
