//! # forge-linalg
//!
//! The shared tensor layer of [Forge](https://github.com/forge-ml/forge): helpers on candle
//! [`Tensor`](candle_core::Tensor)s (f32 and f64) used by every other Forge crate.
//!
//! - [`ops`]: centering, standardisation fitted on one domain and applied to another,
//!   Gram/RBF kernel matrices, pairwise squared distances, the median-heuristic bandwidth.
//! - [`dense`]: Cholesky factor/solve, SPD inverse, symmetric eigendecomposition and thin SVD
//!   through the pure-Rust [faer](https://docs.rs/faer) crate — no system BLAS/LAPACK.
//! - [`check`]: input validation that returns typed errors naming the bad argument.
//! - [`io`]: the one atomic writer and the memory-mapped, streaming safetensors reader/writer.
//! - [`cluster`]: scheduler-only pieces of sharded sweeps (Slurm task resources, `sbatch`
//!   job-array scripts, contiguous shard blocks), shared by forge-bench and forge-cli.
//! - [`bf16`]: bf16 mixed-precision matrix products (AMX tiles, AVX512-BF16, or f32 on
//!   bf16-rounded operands, chosen at run time) and the switch that turns Forge's dense
//!   products over to them.
//! - [`sgemm`]: f32 matrix products split over rayon's threads by row blocks (the dense
//!   layers' forward and backward products); [`mkl`]: the optional oneMKL backend they use
//!   when `FORGE_MKL` names a `libmkl_rt` (loaded at run time, nothing linked).
//! - [`par`]: output buffers filled in parallel (no serial zero-fill first).
//! - [`rng`]: seeded, portable randomness; [`device`]: CUDA > Metal > CPU selection.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let a = Tensor::new(&[[4.0f64, 1.0], [1.0, 3.0]], &Device::Cpu)?;
//! let b = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
//! let x = forge_linalg::dense::cholesky_solve(&a, &b)?;
//! let back: Vec<f64> = a.matmul(&x.unsqueeze(1)?)?.squeeze(1)?.to_vec1()?;
//! assert!((back[0] - 1.0).abs() < 1e-12 && (back[1] - 2.0).abs() < 1e-12);
//! # Ok::<(), forge_linalg::LinalgError>(())
//! ```
#![deny(missing_docs)]

pub mod bf16;
pub mod check;
pub mod cluster;
pub mod dense;
pub mod device;
mod error;
pub mod io;
pub mod mkl;
pub mod ops;
pub mod par;
pub mod rng;
pub mod sgemm;

pub use error::{LinalgError, Result};
pub use ops::Standardizer;
pub use rng::{seeded_rng, ForgeRng};
