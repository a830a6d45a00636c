//! The x86-64 kernels of [`super`]: packing into bf16 panels, the AMX tile micro-kernel
//! (`core::arch::asm!`, AMX intrinsics being unstable) and the AVX512-BF16 one
//! (`_mm512_dpbf16_ps`), and the loop that splits C over rayon's threads.

use super::*;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Where the values of one block come from: element `(line, kk)` is
/// `data[base + line * line_stride + kk * k_stride]` (a line is a row of A or a column of B).
#[derive(Clone, Copy)]
struct Src<'a> {
    data: &'a [f32],
    base: usize,
    line_stride: usize,
    k_stride: usize,
    lines: usize,
    k: usize,
}

impl Src<'_> {
    #[inline(always)]
    fn at(&self, line: usize, kk: usize) -> f32 {
        debug_assert!(line < self.lines && kk < self.k);
        // SAFETY: `base + line * line_stride + kk * k_stride` is the MatRef index of an element
        // inside the matrix (line < lines, kk < k), which `MatRef::new` bounds-checked.
        unsafe {
            *self
                .data
                .get_unchecked(self.base + line * self.line_stride + kk * self.k_stride)
        }
    }

    /// bf16 pair `(kk = 2p, 2p + 1)` of `line` as one u32 (zero beyond k).
    #[inline(always)]
    fn pair(&self, line: usize, p: usize) -> u32 {
        let lo = f32_to_bf16_bits(self.at(line, 2 * p)) as u32;
        let hi = if 2 * p + 1 < self.k {
            f32_to_bf16_bits(self.at(line, 2 * p + 1)) as u32
        } else {
            0
        };
        lo | hi << 16
    }
}

/// Packs one block into u32 bf16 pairs: pair `p` of line `l` goes to `out[idx(l, p)]`, where
/// `idx` steps by `line_step` from line `l` to `l + 1` and by `pair_step` from pair `p` to
/// `p + 1` inside each aligned group of 16 lines and 16 pairs (the unit of the vector paths).
/// Positions beyond the lines or pairs (the padding) are not written: [`pad_zeros`] clears
/// them first.
fn pack_pairs(
    src: Src<'_>,
    out: &mut [u32],
    idx: impl Fn(usize, usize) -> usize,
    line_step: usize,
    pair_step: usize,
) {
    let pairs = src.k.div_ceil(2);
    let scalar = |out: &mut [u32], lines: std::ops::Range<usize>, ps: std::ops::Range<usize>| {
        for l in lines {
            for p in ps.clone() {
                out[idx(l, p)] = src.pair(l, p);
            }
        }
    };
    // the vector stores address 16 lanes as i32 multiples of the step
    let steps_fit = 15 * line_step.max(pair_step) <= i32::MAX as usize;
    if steps_fit && avx512bf16_available() && std::arch::is_x86_feature_detected!("avx512bw") {
        let last = idx(src.lines.saturating_sub(1), pairs.saturating_sub(1));
        assert!(src.lines == 0 || pairs == 0 || last < out.len());
        if src.k_stride == 1 {
            // 32 consecutive k (16 pairs) of a line per vector
            let full = src.k / 32 * 16;
            let full_lines = if line_step == 1 {
                src.lines / 16 * 16
            } else {
                0
            };
            for l0 in (0..full_lines).step_by(16) {
                for p0 in (0..full).step_by(16) {
                    // SAFETY: AVX512-BF16 is available; the 16 x 32 values read are elements
                    // (l0 .. l0 + 16, 2 p0 .. 2 p0 + 32) of the matrix (k stride 1), and the
                    // 16 x 16 pairs written are at idx(l0 + i, p0 + j) = idx(l0, p0 + j) + i
                    // (line step 1 inside the group) <= last < out.len().
                    unsafe {
                        pairs_transposed(
                            src.data
                                .as_ptr()
                                .add(src.base + l0 * src.line_stride + 2 * p0),
                            src.line_stride,
                            out.as_mut_ptr().add(idx(l0, p0)),
                            pair_step,
                        )
                    }
                }
            }
            for l in full_lines..src.lines {
                for p0 in (0..full).step_by(16) {
                    // SAFETY: AVX512-BF16 is available; the 32 values read are elements
                    // (l, 2 p0 .. 2 p0 + 32) of the matrix (2 p0 + 32 <= k, k stride 1) and
                    // the 16 pairs written are at idx(l, p0 .. p0 + 16) <= last < out.len().
                    unsafe {
                        pairs_along_k(
                            src.data
                                .as_ptr()
                                .add(src.base + l * src.line_stride + 2 * p0),
                            out.as_mut_ptr().add(idx(l, p0)),
                            pair_step,
                        )
                    }
                }
            }
            scalar(out, 0..src.lines, full..pairs);
            return;
        }
        if src.line_stride == 1 {
            // 16 consecutive lines of one pair per vector
            let full_lines = src.lines / 16 * 16;
            let full_pairs = src.k / 2;
            // with pair step 1, groups of 16 pairs go through a register transpose
            let grouped = if pair_step == 1 {
                full_pairs / 16 * 16
            } else {
                0
            };
            for l0 in (0..full_lines).step_by(16) {
                for p0 in (0..grouped).step_by(16) {
                    // SAFETY: elements (l0 .. l0 + 16, 2 p0 .. 2 p0 + 32) are in the matrix
                    // (line stride 1, 2 p0 + 32 <= k); the pairs written are at
                    // idx(l0 + i, p0 + j) = idx(l0, p0) + i * line_step + j (pair step 1).
                    unsafe {
                        lines_transposed(
                            src.data.as_ptr().add(src.base + l0 + 2 * p0 * src.k_stride),
                            src.k_stride,
                            out.as_mut_ptr().add(idx(l0, p0)),
                            line_step,
                        )
                    }
                }
                for p in grouped..full_pairs {
                    // SAFETY: as above: elements (l0 .. l0 + 16, 2p) and (.., 2p + 1) are in
                    // the matrix (line stride 1), the pairs written at idx(l0 .. l0 + 16, p).
                    unsafe {
                        let at = src.base + l0 + 2 * p * src.k_stride;
                        pairs_across_lines(
                            src.data.as_ptr().add(at),
                            src.data.as_ptr().add(at + src.k_stride),
                            out.as_mut_ptr().add(idx(l0, p)),
                            line_step,
                        )
                    }
                }
            }
            scalar(out, 0..full_lines, full_pairs..pairs);
            scalar(out, full_lines..src.lines, 0..pairs);
            return;
        }
    }
    scalar(out, 0..src.lines, 0..pairs);
}

/// 16 lines x 16 pairs: pair `j` of line `i` (the values at `src + i * ld + 2j` and the next)
/// goes to `out[j * stride + i]`, for i, j < 16. Each line is converted as in
/// [`pairs_along_k`], then the 16 x 16 block of u32 is transposed in registers, so that each
/// pair's 16 lines are one contiguous store instead of a 16-lane scatter.
///
/// # Safety
/// AVX512-BF16 and AVX512F are available, `src + i * ld` has 32 readable values for i < 16,
/// and `out + j * stride .. + 16` is writable for j < 16.
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn pairs_transposed(src: *const f32, ld: usize, out: *mut u32, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        let mut r = [_mm512_setzero_si512(); 16];
        for (i, ri) in r.iter_mut().enumerate() {
            let lo = _mm512_loadu_ps(src.add(i * ld));
            let hi = _mm512_loadu_ps(src.add(i * ld + 16));
            *ri = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        }
        let t = transpose16(r);
        for (j, tj) in t.iter().enumerate() {
            _mm512_storeu_si512(out.add(j * stride).cast(), *tj);
        }
    }
}

/// Transposes a 16 x 16 block of u32 held as 16 rows.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // 1. interleave 32-bit lanes of row pairs, 2. 64-bit lanes of pairs of pairs, 3. and 4.
    // 128-bit lanes across groups of four and of eight rows
    let mut a = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut b = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    // b[4g + q] holds, in each 128-bit lane L, column 4L + q of rows 4g .. 4g + 4: what is
    // left is the 4 x 4 transpose of 128-bit lanes, t[4L + q] lane g = b[4g + q] lane L
    let mut c = [_mm512_setzero_si512(); 16];
    for g in 0..2 {
        for q in 0..4 {
            let (x, y) = (b[8 * g + q], b[8 * g + 4 + q]);
            // lanes (x0, x2, y0, y2) and (x1, x3, y1, y3)
            c[8 * g + q] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
            c[8 * g + 4 + q] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
        }
    }
    let mut t = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        for h in 0..2 {
            let (x, y) = (c[4 * h + q], c[8 + 4 * h + q]);
            // x: lanes (rows 0-3, rows 4-7) of columns 4 L + q for L = h, h + 2; y: the
            // same for rows 8-15; the even lanes are column q + 4h, the odd q + 4h + 8
            t[q + 4 * h] = _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y);
            t[q + 4 * h + 8] = _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y);
        }
    }
    t
}

/// `out[p * stride] = (bf16(src[2p]), bf16(src[2p + 1]))` for p < 16 (RNE, `vcvtne2ps2bf16`).
///
/// # Safety
/// AVX512-BF16 and AVX512F are available, `src` has 32 readable values, and the 16 `out`
/// positions are writable with `15 * stride` within `i32`.
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn pairs_along_k(src: *const f32, out: *mut u32, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        let lo = _mm512_loadu_ps(src);
        let hi = _mm512_loadu_ps(src.add(16));
        // bf16 lanes 0..16 from lo, 16..32 from hi: in k order, so u32 lane p is pair p
        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        store_strided(out, v, stride);
    }
}

/// `out[l * stride] = (bf16(k0[l]), bf16(k1[l]))` for l < 16.
///
/// # Safety
/// As [`pairs_along_k`], with 16 readable values at `k0` and at `k1`; AVX512BW available.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
unsafe fn pairs_across_lines(k0: *const f32, k1: *const f32, out: *mut u32, stride: usize) {
    // SAFETY: per the contract.
    unsafe { store_strided(out, across_lines(k0, k1), stride) }
}

/// Lane `l` = the bf16 pair `(k0[l], k1[l])` for l < 16.
///
/// # Safety
/// AVX512-BF16, AVX512F and AVX512BW are available; 16 readable values at `k0` and at `k1`.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
unsafe fn across_lines(k0: *const f32, k1: *const f32) -> __m512i {
    // SAFETY: per the contract.
    unsafe {
        let a = _mm512_loadu_ps(k0);
        let b = _mm512_loadu_ps(k1);
        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(b, a));
        // interleave: u16 lane 2l <- a[l] (lane l), 2l + 1 <- b[l] (lane 16 + l)
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20,
            4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        _mm512_permutexvar_epi16(idx, v)
    }
}

/// 16 lines x 16 pairs of a matrix whose lines are consecutive (`src[l + kk * k_stride]` is
/// element (l, kk)): pair `j` of line `i` goes to `out[i * stride + j]`. Each pair of k is
/// converted across the 16 lines as in [`pairs_across_lines`], then the 16 x 16 block is
/// transposed in registers so that each line's 16 pairs are one contiguous store.
///
/// # Safety
/// AVX512-BF16, AVX512F and AVX512BW are available; `src + kk * k_stride` has 16 readable
/// values for kk < 32, and `out + i * stride .. + 16` is writable for i < 16.
#[target_feature(enable = "avx512bf16,avx512f,avx512bw")]
unsafe fn lines_transposed(src: *const f32, k_stride: usize, out: *mut u32, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        let mut r = [_mm512_setzero_si512(); 16];
        for (j, rj) in r.iter_mut().enumerate() {
            *rj = across_lines(src.add(2 * j * k_stride), src.add((2 * j + 1) * k_stride));
        }
        for (i, ti) in transpose16(r).iter().enumerate() {
            _mm512_storeu_si512(out.add(i * stride).cast(), *ti);
        }
    }
}

/// Stores the 16 u32 lanes of `v` at `out + i * stride`.
///
/// # Safety
/// AVX512F available; the 16 positions writable; `15 * stride` fits in `i32`.
#[inline(always)]
unsafe fn store_strided(out: *mut u32, v: __m512i, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        if stride == 1 {
            _mm512_storeu_si512(out.cast(), v);
        } else {
            let s = stride as i32;
            let offs = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(s),
            );
            _mm512_i32scatter_epi32::<4>(out.cast(), offs, v);
        }
    }
}

/// One cache line of packed pairs: the unit of the packed buffers, so that every tile row
/// (64 bytes) is one aligned cache line. Misaligned by 4 bytes, each tile row straddles two
/// lines and the AMX kernel ran at 40 % of its aligned speed (250 vs 610-750 FLOP/cycle on
/// operands in L1, measured here).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// A 64-byte aligned buffer of packed u32 pairs.
struct PackBuf(Vec<Line>);

impl PackBuf {
    /// Capacity in u32.
    fn len(&self) -> usize {
        self.0.len() * 16
    }

    fn as_slice(&self) -> &[u32] {
        // SAFETY: `Line` is 16 u32 without padding (repr(C), 64 bytes), so the lines are
        // `len()` consecutive initialised u32.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u32] {
        // SAFETY: as in `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.len()) }
    }
}

thread_local! {
    /// Buffers of packed operands, kept between products on each thread: a fresh
    /// `vec![0u32; n]` per product cost a memset of every packed operand (~10 % of a bf16
    /// forward at MiniLM size), although packing writes every value except the padding, which
    /// [`pad_zeros`] clears where there is some. Per thread, so that attention's many small
    /// products (one per batch element and head, on every rayon thread at once) do not queue
    /// on one lock.
    static BUFFERS: std::cell::RefCell<Vec<PackBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept at most per thread (two per product in flight).
const KEPT_BUFFERS: usize = 4;

/// A buffer of at least `len` u32 (old contents, any values) from this thread's pool, or a new
/// one; callers use its first `len` values. A kept buffer too small for the request is replaced
/// by a new zeroed one rather than grown (growing would copy its stale contents).
fn take_buffer(len: usize) -> PackBuf {
    let reused = BUFFERS.with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        // the smallest kept buffer that is large enough
        let i = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i)?;
        Some(pool.swap_remove(i))
    });
    reused.unwrap_or_else(|| PackBuf(vec![Line([0; 16]); len.div_ceil(16)]))
}

/// Returns a buffer to this thread's pool; when the pool is full, the smallest buffer (this one
/// or a kept one) is dropped, so the pool keeps the sizes that are costly to allocate.
fn give_back(v: PackBuf) {
    BUFFERS.with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return;
        };
        pool.push(v);
        if pool.len() > KEPT_BUFFERS {
            let smallest = (0..pool.len()).min_by_key(|&i| pool[i].len()).unwrap_or(0);
            pool.swap_remove(smallest);
        }
    });
}

/// Zeroes a block of `lines_cap x pairs_cap` packed pairs when it has padding (fewer real
/// lines or pairs than its capacity); a block without padding is left to be overwritten.
fn pad_zeros(dst: &mut [u32], lines: usize, lines_cap: usize, k: usize, kp: usize) {
    if lines < lines_cap || k.div_ceil(2) < kp / 2 {
        dst.fill(0);
    }
}

/// Where pair `p` of row `r` lies in a packed A block: the block is a sequence of AMX tiles
/// in k order, `[kp / 32][MB rows][16 pairs]`, so that the two A tiles of one k step are 2 KiB
/// of consecutive memory (as the two B tiles are) rather than 32 rows `kp` apart.
#[inline(always)]
fn a_index(r: usize, p: usize) -> usize {
    (p / 16 * MB + r) * 16 + p % 16
}

/// Packs A (m x k) into row blocks of MB rows, each laid out by [`a_index`].
fn pack_a(a: MatRef<'_>, kp: usize, out: &mut [u32], par: bool) {
    let block = |(ib, dst): (usize, &mut [u32])| {
        let i0 = ib * MB;
        let src = Src {
            data: a.data,
            base: i0 * a.row_stride,
            line_stride: a.row_stride,
            k_stride: a.col_stride,
            lines: MB.min(a.rows - i0),
            k: a.cols,
        };
        pad_zeros(dst, src.lines, MB, src.k, kp);
        pack_pairs(src, dst, a_index, 16, 1);
    };
    if par {
        out.par_chunks_mut(MB * kp / 2).enumerate().for_each(block);
    } else {
        out.chunks_mut(MB * kp / 2).enumerate().for_each(block);
    }
}

/// Packs B (k x n) into panels of NB columns, `[kp / 2][NB]` pairs each.
fn pack_b(b: MatRef<'_>, kp: usize, out: &mut [u32], par: bool) {
    let panel = |(jp, dst): (usize, &mut [u32])| {
        let j0 = jp * NB;
        let src = Src {
            data: b.data,
            base: j0 * b.col_stride,
            line_stride: b.col_stride,
            k_stride: b.row_stride,
            lines: NB.min(b.cols - j0),
            k: b.rows,
        };
        pad_zeros(dst, src.lines, NB, src.k, kp);
        pack_pairs(src, dst, |l, p| p * NB + l, 1, NB);
    };
    if par {
        out.par_chunks_mut(NB * kp / 2).enumerate().for_each(panel);
    } else {
        out.chunks_mut(NB * kp / 2).enumerate().for_each(panel);
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

/// The 32 x 32 block of C from a packed 32-row block of A (`a`, laid out by [`a_index`]) and
/// a 32-column panel of B (`b`), into `out` (row-major, 32 x 32).
///
/// # Safety
/// The AMX tile state was requested ([`amx_available`] is true), the thread's tiles are
/// configured with [`tile_config`], `a` points to a packed block of 32 x `kp` bf16, `b` to
/// `kp * 32` bf16, and `kp` is a positive multiple of 32.
#[inline(always)]
unsafe fn amx_block(a: *const u16, kp: usize, b: *const u16, out: &mut [f32; MB * NB]) {
    let lda: usize = 64; // bytes per A tile row ([`a_index`])
    let a_lo = a;
    // SAFETY (pointer arithmetic): rows 16..32 of the first k step's 32 x 32 tile pair.
    let a_hi = unsafe { a.add(16 * KB) };
    let steps = kp / KB;
    // SAFETY: per the caller's contract; each step reads 16 rows of 64 bytes of A at
    // stride 64 from a_lo/a_hi + 2048 * step, and 16 rows of 64 bytes of B at stride 128
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
            // the A and B tiles of two steps ahead (2 x 2 KiB) into L1: the hardware
            // prefetchers stop at L2, and tile loads from L2 held the kernel at ~1/2 of its
            // speed on operands in L1 (measured; prefetching past the block is harmless)
            "prefetcht0 [{alo} + 4096]",
            "prefetcht0 [{b} + 4096]",
            "prefetcht0 [{alo} + 4160]",
            "prefetcht0 [{b} + 4160]",
            "prefetcht0 [{alo} + 4224]",
            "prefetcht0 [{b} + 4224]",
            "prefetcht0 [{alo} + 4288]",
            "prefetcht0 [{b} + 4288]",
            "prefetcht0 [{alo} + 4352]",
            "prefetcht0 [{b} + 4352]",
            "prefetcht0 [{alo} + 4416]",
            "prefetcht0 [{b} + 4416]",
            "prefetcht0 [{alo} + 4480]",
            "prefetcht0 [{b} + 4480]",
            "prefetcht0 [{alo} + 4544]",
            "prefetcht0 [{b} + 4544]",
            "prefetcht0 [{alo} + 4608]",
            "prefetcht0 [{b} + 4608]",
            "prefetcht0 [{alo} + 4672]",
            "prefetcht0 [{b} + 4672]",
            "prefetcht0 [{alo} + 4736]",
            "prefetcht0 [{b} + 4736]",
            "prefetcht0 [{alo} + 4800]",
            "prefetcht0 [{b} + 4800]",
            "prefetcht0 [{alo} + 4864]",
            "prefetcht0 [{b} + 4864]",
            "prefetcht0 [{alo} + 4928]",
            "prefetcht0 [{b} + 4928]",
            "prefetcht0 [{alo} + 4992]",
            "prefetcht0 [{b} + 4992]",
            "prefetcht0 [{alo} + 5056]",
            "prefetcht0 [{b} + 5056]",
            "prefetcht0 [{alo} + 5120]",
            "prefetcht0 [{b} + 5120]",
            "prefetcht0 [{alo} + 5184]",
            "prefetcht0 [{b} + 5184]",
            "prefetcht0 [{alo} + 5248]",
            "prefetcht0 [{b} + 5248]",
            "prefetcht0 [{alo} + 5312]",
            "prefetcht0 [{b} + 5312]",
            "prefetcht0 [{alo} + 5376]",
            "prefetcht0 [{b} + 5376]",
            "prefetcht0 [{alo} + 5440]",
            "prefetcht0 [{b} + 5440]",
            "prefetcht0 [{alo} + 5504]",
            "prefetcht0 [{b} + 5504]",
            "prefetcht0 [{alo} + 5568]",
            "prefetcht0 [{b} + 5568]",
            "prefetcht0 [{alo} + 5632]",
            "prefetcht0 [{b} + 5632]",
            "prefetcht0 [{alo} + 5696]",
            "prefetcht0 [{b} + 5696]",
            "prefetcht0 [{alo} + 5760]",
            "prefetcht0 [{b} + 5760]",
            "prefetcht0 [{alo} + 5824]",
            "prefetcht0 [{b} + 5824]",
            "prefetcht0 [{alo} + 5888]",
            "prefetcht0 [{b} + 5888]",
            "prefetcht0 [{alo} + 5952]",
            "prefetcht0 [{b} + 5952]",
            "prefetcht0 [{alo} + 6016]",
            "prefetcht0 [{b} + 6016]",
            "prefetcht0 [{alo} + 6080]",
            "prefetcht0 [{b} + 6080]",
            "add {alo}, 2048",
            "add {ahi}, 2048",
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

/// The 8 x 32 block of C from rows `r0 .. r0 + 8` of a packed A block (`a`, laid out by
/// [`a_index`]) and a B panel.
///
/// # Safety
/// AVX512-BF16 and AVX512F are available; `a` points to a packed block of 32 x `kp` bf16,
/// `r0 + 8 <= 32`, `b` points to `kp * 32` bf16, `kp` is even, `out` has room for 8 rows of
/// 32.
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn dp_block(a: *const u32, r0: usize, kp: usize, b: *const u16, out: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR_DP];
    for p in 0..kp / 2 {
        // SAFETY: p < kp / 2 and r0 + r < 32, so the loads stay in the B panel and the A block.
        unsafe {
            let bp = b.add(p * 2 * NB);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(NB).cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let pair = a.add(a_index(r0 + r, p)).read() as i32;
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

/// A 32 x 32 block of C, aligned for the tile stores.
#[repr(C, align(64))]
struct Block([f32; MB * NB]);

/// Writes the valid part of a 32 x 32 block into C: as it is ([`Start::Zero`]), added to C
/// ([`Start::Keep`], C initialised) or plus the start row ([`Start::Rows`]). Compiled for
/// AVX-512 (both bf16 paths have it), 16 lanes where the baseline build uses 4.
///
/// # Safety
/// AVX512F is available.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn store_block(
    blk: &[f32; MB * NB],
    c: &mut [MaybeUninit<f32>],
    n: usize,
    r0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    start: Start<'_>,
) {
    for r in 0..rows {
        let dst = &mut c[(r0 + r) * n + j0..(r0 + r) * n + j0 + cols];
        let src = &blk[r * NB..r * NB + cols];
        match start {
            Start::Keep => dst.iter_mut().zip(src).for_each(|(d, s)| {
                // SAFETY: with Start::Keep the caller passed an initialised C.
                let v = unsafe { d.assume_init() };
                d.write(v + s);
            }),
            Start::Zero => dst.iter_mut().zip(src).for_each(|(d, &s)| {
                d.write(s);
            }),
            Start::Rows(bias) => {
                dst.iter_mut()
                    .zip(src)
                    .zip(&bias[j0..j0 + cols])
                    .for_each(|((d, &s), &b)| {
                        d.write(b + s);
                    })
            }
        }
    }
}

pub(super) fn run(
    path: Bf16Path,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [MaybeUninit<f32>],
    start: Start<'_>,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let kp = round_up(k, KB);
    let (mp, np) = (round_up(m, MB), round_up(n, NB));
    let par = threads > 1;
    // bf16 pairs as u32 (4-byte aligned for the pair stores) in kept buffers; padding zeroed
    // by the thread that packs the block
    let (a_len, b_len) = (mp * kp / 2, np * kp / 2);
    // taken and given back on this thread (the packing below may run on other threads), so
    // that the same thread's pool serves the next product
    let (mut ap_buf, mut bp_buf) = (take_buffer(a_len), take_buffer(b_len));
    let (ap, bp) = (
        &mut ap_buf.as_mut_slice()[..a_len],
        &mut bp_buf.as_mut_slice()[..b_len],
    );
    if par {
        rayon::join(|| pack_a(a, kp, ap, true), || pack_b(b, kp, bp, true));
    } else {
        pack_a(a, kp, ap, false);
        pack_b(b, kp, bp, false);
    }
    compute(
        path,
        &ap_buf.as_slice()[..a_len],
        &bp_buf.as_slice()[..b_len],
        m,
        n,
        kp,
        c,
        start,
        threads,
    );
    give_back(ap_buf);
    give_back(bp_buf);
}

/// C from packed operands: `ap` holds `round_up(m, MB)` rows of `kp` bf16 in row blocks,
/// `bp` the `round_up(n, NB) / NB` panels of B.
#[allow(clippy::too_many_arguments)]
fn compute(
    path: Bf16Path,
    ap: &[u32],
    bp: &[u32],
    m: usize,
    n: usize,
    kp: usize,
    c: &mut [MaybeUninit<f32>],
    start: Start<'_>,
    threads: usize,
) {
    let mp = round_up(m, MB);
    let par = threads > 1;
    // rows of C per task: about four tasks per thread, whole A blocks
    let rows_per_task = if par {
        round_up(m.div_ceil(4 * threads), MB)
    } else {
        mp
    };
    let task = |(t, c_rows): (usize, &mut [MaybeUninit<f32>])| {
        let r_start = t * rows_per_task;
        let rows_here = c_rows.len() / n;
        // 64-byte aligned, as the tile stores want (see [`Line`])
        let mut blk = Block([0f32; MB * NB]);
        let blk = &mut blk.0;
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
                let a_blk = &ap[(r_start + rb) * kp / 2..(r_start + rb + MB) * kp / 2];
                for jb in (j0..j_end).step_by(NB) {
                    let b_pan = &bp[jb * kp / 2..(jb + NB) * kp / 2];
                    if amx {
                        // SAFETY: tiles configured above; a_blk is a packed block of 32 x kp
                        // bf16, b_pan is kp * 32 bf16, kp a positive multiple of 32.
                        unsafe { amx_block(a_blk.as_ptr().cast(), kp, b_pan.as_ptr().cast(), blk) };
                    } else {
                        for r in (0..MB).step_by(MR_DP) {
                            // SAFETY: the path is available (checked by `run`), the
                            // pointers cover 8 rows of A and the panel, blk has 32 rows.
                            unsafe {
                                dp_block(
                                    a_blk.as_ptr(),
                                    r,
                                    kp,
                                    b_pan.as_ptr().cast(),
                                    blk.as_mut_ptr().add(r * NB),
                                )
                            };
                        }
                    }
                    // SAFETY: both paths that reach here need AVX512F.
                    unsafe {
                        store_block(
                            blk,
                            c_rows,
                            n,
                            rb,
                            MB.min(rows_here - rb),
                            jb,
                            NB.min(n - jb),
                            start,
                        )
                    };
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
