//! Helpers for benchmarks and long training runs: allocator tuning and synthetic batches.

use crate::Result;
use candle_core::{DType, Device, Tensor};

/// Keep freed memory in the process instead of returning it to the OS after every step
/// (glibc `mallopt`: `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` raised to 1 GiB, `M_ARENA_MAX`
/// left alone). Large transformer steps otherwise spend ~30% of their time unmapping and
/// re-faulting activation buffers. Returns whether the settings were applied (glibc on Linux
/// only; a no-op elsewhere). Call once at start-up, before heavy allocation.
///
/// Also shortens how long candle's idle worker threads spin before they sleep
/// (`CANDLE_BARRIER_POOL_SPIN_LIMIT` 25,000 -> 100 spins, unless the variable is set): between
/// two parallel GEMMs the spinning kept a second core busy for nothing, about 16% of a LoRA
/// step's CPU time (and so of its estimated energy) at MiniLM size, with the same wall time.
/// It must run before candle's first parallel operation to take effect.
pub fn tune_allocator() -> bool {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator thresholds; it is safe to call at any time.
        let a = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, GIB) };
        // SAFETY: as above.
        let b = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, GIB) };
        a == 1 && b == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// A random batch for benchmarks: ids `[b, s]` (u32, first token 101 as `[CLS]`), an all-ones
/// attention mask and labels in `[0, num_labels)`.
///
/// # Errors
/// Candle errors only.
pub fn synthetic_batch(
    b: usize,
    s: usize,
    vocab: usize,
    num_labels: usize,
    seed: u64,
    device: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    use rand::Rng;
    let mut rng = forge_linalg::seeded_rng(seed);
    let ids: Vec<u32> = (0..b * s)
        .map(|i| {
            if i % s == 0 {
                101.min(vocab as u32 - 1)
            } else {
                rng.random_range(0..vocab as u32)
            }
        })
        .collect();
    let labels: Vec<u32> = (0..b)
        .map(|_| rng.random_range(0..num_labels as u32))
        .collect();
    Ok((
        Tensor::from_vec(ids, (b, s), device)?,
        Tensor::ones((b, s), DType::U32, device)?,
        Tensor::from_vec(labels, b, device)?,
    ))
}
