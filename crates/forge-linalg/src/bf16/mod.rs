//! bf16 mixed-precision matrix products: `C (+)= bf16(A) · bf16(B)` with f32 accumulation,
//! and the process-wide switch that turns Forge's dense products over to them.
//!
//! Mixed precision keeps f32 master weights, optimizer state and loss, and rounds only the
//! operands of the matrix products to bfloat16 (8-bit exponent, 7-bit mantissa, the same range
//! as f32), accumulating in f32: Micikevicius et al. 2018, "Mixed Precision Training" (ICLR),
//! and for bfloat16 without loss scaling Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep
//! Learning Training" (arXiv:1905.12322).
//!
//! # Paths
//! The instruction set is chosen at run time ([`Bf16Path::detect`]); every path computes the
//! same products of the same rounded operands and differs only in the order of the f32 sums:
//!
//! | path | instructions | where |
//! |---|---|---|
//! | [`Bf16Path::Amx`] | AMX tiles: `ldtilecfg`, `tileloadd`, `tdpbf16ps`, `tilestored`, `tilerelease` | Intel Sapphire Rapids and later |
//! | [`Bf16Path::Avx512Bf16`] | `vdpbf16ps` (`_mm512_dpbf16_ps`) | AMD Zen 4+, Intel Cooper Lake / Sapphire Rapids |
//! | [`Bf16Path::F32`] | the `gemm` crate's f32 kernel on bf16-rounded operands | everywhere else |
//!
//! The instructions are specified in the Intel Architecture Instruction Set Extensions and
//! Future Features Programming Reference (chapter 3, "Intel AMX"; `VDPBF16PS` and
//! `VCVTNE2PS2BF16` in the AVX512_BF16 pages). AMX intrinsics are unstable in Rust (issue
//! 126622, including their `is_x86_feature_detected!` names), so the AMX kernel is written with
//! stable `core::arch::asm!` and AMX is detected with `cpuid` leaf 7; Linux additionally hands
//! out the 8 KiB tile state only to a process that asked for it with
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)` (else the first tile instruction
//! raises SIGILL), which [`Bf16Path::detect`] does once.
//!
//! Both hardware paths treat bf16 subnormal inputs as zero and flush subnormal results
//! (as the reference specifies for `TDPBF16PS` / `VDPBF16PS`); values below ~1.2e-38 in
//! magnitude, irrelevant to training, are where they can differ from [`Bf16Path::F32`].
//!
//! # Layout
//! Both packed operands live in 64-byte aligned buffers (a tile row is one cache line; the AMX
//! kernel ran 2.5x slower on rows straddling two). A is packed into bf16 row blocks of 32 rows
//! (K padded to 32 with zeros), each a sequence of tile pairs `[k / 32][32 rows][32 bf16]` so
//! that one k step of the kernel reads 2 KiB of consecutive A, B into
//! panels of 32 columns in the "VNNI" pair layout `[k / 2][32 columns][2]`, which is both the
//! tile layout `tdpbf16ps` reads (one tile row = 16 k-pairs of 16 columns; two tiles per panel
//! at a 128-byte stride) and the vector layout `vdpbf16ps` reads (one k-pair of 16 columns per
//! 512-bit register). The AMX micro-kernel keeps a 32 x 32 block of C in four accumulator tiles
//! (2 A tiles x 2 B tiles), the AVX512-BF16 one a 8 x 32 block in 16 registers.

use crate::sgemm::Start;
use crate::{LinalgError, Result};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Environment variable that pins the instruction path: `amx`, `avx512` or `f32`.
pub const PATH_ENV: &str = "FORGE_BF16_PATH";
/// Environment variable that turns the bf16 mode on for the whole process: `bf16` (or `f32`).
pub const PRECISION_ENV: &str = "FORGE_PRECISION";

/// Rows of a packed A block: two 16-row AMX tiles.
const MB: usize = 32;
/// Columns of a packed B panel: two 16-column AMX tiles.
const NB: usize = 32;
/// K step of the AMX kernel: one tile row holds 32 bf16 values (64 bytes).
const KB: usize = 32;
/// Columns of C one task sweeps before moving to the next rows: 8 panels, so that the B panels
/// it reuses (8 x 32 x K bf16, 384 KiB at K = 768) stay in the core's L2 cache.
const NC: usize = 8 * NB;
/// Rows of the AVX512-BF16 micro-kernel (16 accumulator registers of 16 f32).
const MR_DP: usize = 8;

/// The instruction path of the bf16 products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bf16Path {
    /// Intel AMX tiles (`tdpbf16ps`).
    Amx,
    /// AVX512-BF16 dot products (`vdpbf16ps`).
    Avx512Bf16,
    /// The f32 `gemm` kernel on bf16-rounded operands: same rounding, no speed-up.
    F32,
}

impl Bf16Path {
    /// All paths, fastest first.
    pub const ALL: [Bf16Path; 3] = [Bf16Path::Amx, Bf16Path::Avx512Bf16, Bf16Path::F32];

    /// The path products use: the one pinned with [`PATH_ENV`] when this CPU has it, else the
    /// fastest this CPU has. Detected once per process (which also requests the AMX tile
    /// state from Linux); an unknown or unavailable pinned path is reported as a `tracing`
    /// warning and ignored.
    pub fn detect() -> Bf16Path {
        static DETECTED: OnceLock<Bf16Path> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = Self::ALL
                .into_iter()
                .find(|p| p.is_available())
                .unwrap_or(Bf16Path::F32);
            match std::env::var(PATH_ENV) {
                Ok(s) => match s.parse::<Bf16Path>() {
                    Ok(p) if p.is_available() => p,
                    Ok(p) => {
                        tracing::warn!(
                            "{PATH_ENV}={s}: {p:?} is not available here; using {best:?}"
                        );
                        best
                    }
                    Err(e) => {
                        tracing::warn!("{e}; using {best:?}");
                        best
                    }
                },
                Err(_) => best,
            }
        })
    }

    /// Whether this CPU (and OS) can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Bf16Path::Amx => amx_available(),
            Bf16Path::Avx512Bf16 => avx512bf16_available(),
            Bf16Path::F32 => true,
        }
    }

    /// The paths this machine can run, fastest first (tests run each against f32).
    pub fn available() -> Vec<Bf16Path> {
        Self::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// Short name, as accepted by [`PATH_ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Amx => "amx",
            Bf16Path::Avx512Bf16 => "avx512",
            Bf16Path::F32 => "f32",
        }
    }
}

impl std::fmt::Display for Bf16Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bf16Path {
    type Err = LinalgError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "amx" => Ok(Bf16Path::Amx),
            "avx512" | "avx512bf16" | "avx512_bf16" => Ok(Bf16Path::Avx512Bf16),
            "f32" => Ok(Bf16Path::F32),
            _ => Err(LinalgError::InvalidConfig {
                name: PATH_ENV.into(),
                reason: format!("expected amx, avx512 or f32, got {s:?}"),
            }),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512bf16_available() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512bf16_available() -> bool {
    false
}

/// AMX-BF16 and AMX-TILE in `cpuid` (leaf 7, sub-leaf 0, EDX bits 22 and 24), the tile state
/// granted by Linux, and AVX512-BF16 (the kernel shares the packing with it). Checked once.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_available() -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    *AMX.get_or_init(|| {
        // cpuid is always present on x86_64 (the std detection macros rely on it too).
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let has_amx = leaf7.edx & (1 << 22) != 0 && leaf7.edx & (1 << 24) != 0;
        has_amx && avx512bf16_available() && request_tile_state()
    })
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_available() -> bool {
    false
}

/// Asks Linux for the AMX tile data state (`ARCH_REQ_XCOMP_PERM` for `XFEATURE_XTILEDATA`)
/// and checks that it was granted (`ARCH_GET_XCOMP_PERM`). The permission is process-wide.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these codes only reads its integer argument (REQ) or writes one
    // u64 to the pointer passed (GET), which points to a live local.
    unsafe {
        if libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) != 0
        {
            return false;
        }
        let mut mask: u64 = 0;
        if libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut mask as *mut u64,
        ) != 0
        {
            return false;
        }
        mask & (1 << XFEATURE_XTILEDATA) != 0
    }
}

/// Precision of Forge's dense matrix products (the linear layers and attention products of
/// forge-lora and forge-models). Weights, gradients, optimizer state and losses stay f32
/// either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatmulPrecision {
    /// Plain f32 products (the default).
    #[default]
    F32,
    /// bf16 operands, f32 accumulation and results ([`gemm_bf16`]).
    Bf16,
}

impl FromStr for MatmulPrecision {
    type Err = LinalgError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(MatmulPrecision::F32),
            "bf16" => Ok(MatmulPrecision::Bf16),
            _ => Err(LinalgError::InvalidConfig {
                name: PRECISION_ENV.into(),
                reason: format!("expected f32 or bf16, got {s:?}"),
            }),
        }
    }
}

const UNSET: u8 = u8::MAX;
static GLOBAL_PRECISION: AtomicU8 = AtomicU8::new(UNSET);

thread_local! {
    static LOCAL_PRECISION: Cell<Option<MatmulPrecision>> = const { Cell::new(None) };
}

fn encode(p: MatmulPrecision) -> u8 {
    match p {
        MatmulPrecision::F32 => 0,
        MatmulPrecision::Bf16 => 1,
    }
}

/// Sets the process-wide precision of Forge's dense products (overrides [`PRECISION_ENV`]).
pub fn set_matmul_precision(p: MatmulPrecision) {
    GLOBAL_PRECISION.store(encode(p), Ordering::Relaxed);
}

/// The precision in force on this thread: a [`with_matmul_precision`] scope's, else the
/// process-wide one ([`set_matmul_precision`], else [`PRECISION_ENV`], else f32).
pub fn matmul_precision() -> MatmulPrecision {
    if let Some(p) = LOCAL_PRECISION.with(Cell::get) {
        return p;
    }
    let g = match GLOBAL_PRECISION.load(Ordering::Relaxed) {
        UNSET => {
            let from_env = match std::env::var(PRECISION_ENV) {
                Ok(s) => s.parse().unwrap_or_else(|e| {
                    tracing::warn!("{e}; using f32");
                    MatmulPrecision::F32
                }),
                Err(_) => MatmulPrecision::F32,
            };
            // a concurrent set_matmul_precision wins over the environment
            let _ = GLOBAL_PRECISION.compare_exchange(
                UNSET,
                encode(from_env),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            GLOBAL_PRECISION.load(Ordering::Relaxed)
        }
        v => v,
    };
    if g == 1 {
        MatmulPrecision::Bf16
    } else {
        MatmulPrecision::F32
    }
}

/// Runs `f` with the products of this thread at precision `p` (restored afterwards, also on
/// panic). Ops read the precision on the thread that builds them (forward) and keep it for
/// their backward pass.
pub fn with_matmul_precision<R>(p: MatmulPrecision, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<MatmulPrecision>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL_PRECISION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(LOCAL_PRECISION.with(|c| c.replace(Some(p))));
    f()
}

/// A read-only strided view of an f32 matrix: element `(i, j)` is
/// `data[i * row_stride + j * col_stride]`. A transpose is the same data with the strides
/// swapped ([`MatRef::t`]).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A view of `rows x cols` elements of `data` with the given strides (in elements).
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] when the last element lies beyond `data` (or its
    /// index overflows).
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(row_stride)
                .and_then(|r| (cols - 1).checked_mul(col_stride).map(|c| (r, c)))
                .and_then(|(r, c)| r.checked_add(c));
            match last {
                Some(l) if l < data.len() => {}
                _ => {
                    return Err(LinalgError::InvalidArgument {
                        name: "matrix view",
                        reason: format!(
                            "{rows} x {cols} with strides ({row_stride}, {col_stride}) needs \
                             more than the {} values given",
                            data.len()
                        ),
                    })
                }
            }
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A row-major `rows x cols` view.
    ///
    /// # Errors
    /// As [`MatRef::new`].
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transposed view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The data, row stride and column stride (for the f32 GEMM of [`crate::sgemm`]).
    pub(crate) fn raw(&self) -> (&'a [f32], usize, usize) {
        (self.data, self.row_stride, self.col_stride)
    }

    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        debug_assert!(i < self.rows && j < self.cols);
        // SAFETY: `new` checked that the largest index, (rows-1)*rs + (cols-1)*cs, is within
        // `data`, and callers pass i < rows, j < cols, so the index is at most that.
        unsafe {
            *self
                .data
                .get_unchecked(i * self.row_stride + j * self.col_stride)
        }
    }
}

/// Rounds an f32 to the nearest bf16 (ties to even), as raw bits. NaN stays a (quiet) NaN;
/// values beyond the largest bf16 round to infinity.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((b >> 16) | 0x40) as u16
    } else {
        rounded
    }
}

/// The f32 value of bf16 bits (exact).
#[inline(always)]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to the nearest bf16 value (ties to even), returned as f32.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Options of a bf16 product: the path, the threads, and whether to add to C.
#[derive(Debug, Clone, Copy)]
pub struct Bf16Gemm {
    path: Bf16Path,
    threads: usize,
    accumulate: bool,
}

impl Default for Bf16Gemm {
    fn default() -> Self {
        Self::new()
    }
}

impl Bf16Gemm {
    /// The detected path ([`Bf16Path::detect`]), the threads of the rayon pool it runs in
    /// (`RAYON_NUM_THREADS`, as candle's thread count), C overwritten. Cheap: no environment
    /// read per product (attention builds one per head).
    pub fn new() -> Self {
        Self {
            path: Bf16Path::detect(),
            threads: rayon::current_num_threads(),
            accumulate: false,
        }
    }

    /// Uses `path` (checked when the product runs).
    pub fn path(mut self, path: Bf16Path) -> Self {
        self.path = path;
        self
    }

    /// Splits the product over rayon's threads when `threads > 1` (1: on the calling thread
    /// only, for callers that parallelise over many small products themselves).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// `C += A B` when true, `C = A B` when false.
    pub fn accumulate(mut self, accumulate: bool) -> Self {
        self.accumulate = accumulate;
        self
    }

    /// The path this product runs on.
    pub fn selected_path(&self) -> Bf16Path {
        self.path
    }

    /// `C (+)= bf16(A) · bf16(B)` with f32 accumulation; `C` is row-major `m x n` for
    /// `A` `m x k` and `B` `k x n` (any strides). With `k = 0`, `C` is zeroed (or left as it
    /// is when accumulating).
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] when the inner dimensions differ, `c` does not hold
    /// exactly `m * n` values, or the path is not available on this machine.
    pub fn run(&self, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) -> Result<()> {
        let start = if self.accumulate {
            Start::Keep
        } else {
            Start::Zero
        };
        // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the product only writes f32
        // values into it.
        let c = unsafe { &mut *(c as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.run_into(a, b, c, start)
    }

    /// `bf16(A) · bf16(B)` into a new row-major `m x n` vector, each row starting from `bias`
    /// when given (`bias.len() == n`: a linear layer's `x W^T + b`), written once without a
    /// zero-fill first. The accumulate setting does not apply.
    ///
    /// # Errors
    /// As [`Bf16Gemm::run`], and when `bias` is not `n` long.
    pub fn run_new(&self, a: MatRef<'_>, b: MatRef<'_>, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        let n = b.cols;
        let need = a
            .rows
            .checked_mul(n)
            .ok_or_else(|| LinalgError::InvalidArgument {
                name: "c",
                reason: format!("{} x {n} overflows", a.rows),
            })?;
        let mut out: Vec<f32> = Vec::with_capacity(need);
        let start = bias.map_or(Start::Zero, Start::Rows);
        self.run_into(a, b, &mut out.spare_capacity_mut()[..need], start)?;
        // SAFETY: run_into succeeded, so it wrote every one of the m * n values (each path
        // writes every element of C when starting from zeros or the bias rows).
        unsafe { out.set_len(need) };
        Ok(out)
    }

    /// The product into `c`, which must be initialised when `start` is [`Start::Keep`]; every
    /// value is written otherwise.
    fn run_into(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        c: &mut [MaybeUninit<f32>],
        start: Start<'_>,
    ) -> Result<()> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if b.rows != k {
            return Err(LinalgError::InvalidArgument {
                name: "b",
                reason: format!("A is {m} x {k} but B is {} x {n}", b.rows),
            });
        }
        let need = m
            .checked_mul(n)
            .ok_or_else(|| LinalgError::InvalidArgument {
                name: "c",
                reason: format!("{m} x {n} overflows"),
            })?;
        if c.len() != need {
            return Err(LinalgError::InvalidArgument {
                name: "c",
                reason: format!("expected {m} x {n} = {need} values, got {}", c.len()),
            });
        }
        if let Start::Rows(r) = start {
            if r.len() != n {
                return Err(LinalgError::InvalidArgument {
                    name: "bias",
                    reason: format!("{} values for {n} columns", r.len()),
                });
            }
        }
        if !self.path.is_available() {
            return Err(LinalgError::InvalidArgument {
                name: "path",
                reason: format!("{:?} is not available on this CPU", self.path),
            });
        }
        if need == 0 {
            return Ok(());
        }
        if k == 0 {
            match start {
                Start::Keep => {}
                Start::Zero => c.fill(MaybeUninit::new(0.0)),
                Start::Rows(r) => c.chunks_exact_mut(n).for_each(|row| {
                    row.iter_mut().zip(r).for_each(|(d, &v)| {
                        d.write(v);
                    })
                }),
            }
            return Ok(());
        }
        match self.path {
            Bf16Path::F32 => f32_path(a, b, c, start, self.threads),
            #[cfg(target_arch = "x86_64")]
            Bf16Path::Amx | Bf16Path::Avx512Bf16 => {
                x86::run(self.path, a, b, c, start, self.threads);
                Ok(())
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the f32 path is available off x86_64"),
        }
    }
}

/// `C (+)= bf16(A) · bf16(B)` on the detected path with rayon's thread count; see
/// [`Bf16Gemm::run`].
///
/// # Errors
/// As [`Bf16Gemm::run`].
pub fn gemm_bf16(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32], accumulate: bool) -> Result<()> {
    Bf16Gemm::new().accumulate(accumulate).run(a, b, c)
}

/// The portable path: round both operands to bf16 (kept as f32, contiguous), then the f32
/// GEMM of [`crate::sgemm`].
fn f32_path(
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [MaybeUninit<f32>],
    start: Start<'_>,
    threads: usize,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let ar: Vec<f32> = (0..m)
        .flat_map(|i| (0..k).map(move |j| round_to_bf16(a.at(i, j))))
        .collect();
    let br: Vec<f32> = (0..k)
        .flat_map(|i| (0..n).map(move |j| round_to_bf16(b.at(i, j))))
        .collect();
    let (ar, br) = (MatRef::row_major(&ar, m, k)?, MatRef::row_major(&br, k, n)?);
    crate::sgemm::gemm_f32_uninit(ar, br, c, start, threads)
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

mod tensor;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use tensor::{mat_from_layout, matmul};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1)
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6)
        assert_eq!(
            round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(
            round_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(round_to_bf16(-2.5), -2.5);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::MAX), f32::INFINITY);
        assert_eq!(round_to_bf16(f32::NEG_INFINITY), f32::NEG_INFINITY);
        // agrees with the half crate
        for i in 0..10_000u32 {
            let x = f32::from_bits(i.wrapping_mul(2_654_435_761));
            if !x.is_nan() {
                assert_eq!(round_to_bf16(x), half::bf16::from_f32(x).to_f32(), "{x}");
            }
        }
    }

    #[test]
    fn parsing() {
        assert_eq!("AMX".parse::<Bf16Path>().unwrap(), Bf16Path::Amx);
        assert_eq!("avx512".parse::<Bf16Path>().unwrap(), Bf16Path::Avx512Bf16);
        assert!("sse".parse::<Bf16Path>().is_err());
        assert_eq!(
            "bf16".parse::<MatmulPrecision>().unwrap(),
            MatmulPrecision::Bf16
        );
        assert!("half".parse::<MatmulPrecision>().is_err());
    }

    #[test]
    fn thread_scope_overrides_and_restores() {
        let before = matmul_precision();
        with_matmul_precision(MatmulPrecision::Bf16, || {
            assert_eq!(matmul_precision(), MatmulPrecision::Bf16);
            with_matmul_precision(MatmulPrecision::F32, || {
                assert_eq!(matmul_precision(), MatmulPrecision::F32)
            });
            assert_eq!(matmul_precision(), MatmulPrecision::Bf16);
        });
        assert_eq!(matmul_precision(), before);
    }
}
