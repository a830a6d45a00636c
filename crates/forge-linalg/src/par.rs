//! Output buffers filled in parallel, for the CPU kernels of forge-lora and forge-models.
//!
//! `vec![0f32; n]` zero-fills on the calling thread before a parallel kernel runs: at MiniLM
//! size the fused kernels' outputs (`[tokens, 1536]` and the like) made that memset, and the
//! page faults it takes on fresh memory, a serial stretch with the other core idle. Here each
//! task zeroes its own chunk (while it is about to be written, so in cache) and then fills it.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A new vector of `n` values, computed in parallel over chunks of `chunk` values: task `i`
/// gets its chunk (values `i * chunk ..`, zeroed) to fill.
pub fn par_new<F>(n: usize, chunk: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    // SAFETY: the closure writes every value of its chunk (the zero fill) before `f` reads any.
    unsafe {
        par_new_overwrite(n, chunk, |i, c| {
            c.fill(0.0);
            f(i, c);
        })
    }
}

/// As [`par_new`] without the zero fill, for kernels that write every value of their chunk
/// (an elementwise map, a row-wise softmax or normalisation): the fill is a pass over memory
/// that is about to be overwritten anyway (about 4 % of a MiniLM training step).
///
/// # Safety
/// `f` must write every value of the chunk it is given, and read none before writing it (the
/// chunk starts uninitialised).
pub unsafe fn par_new_overwrite<F>(n: usize, chunk: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| {
            // SAFETY: MaybeUninit<f32> has the layout of f32; the caller's contract is that `f`
            // writes every value before reading it.
            let c = unsafe { &mut *(c as *mut [MaybeUninit<f32>] as *mut [f32]) };
            f(i, c);
        });
    // SAFETY: the chunks cover all n values and `f` wrote each (the caller's contract).
    unsafe { v.set_len(n) };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_is_filled_in_place() {
        for (n, chunk) in [(0, 4), (1, 4), (10, 3), (4096, 1000), (5, 0)] {
            let v = par_new(n, chunk, |i, c| {
                for (j, x) in c.iter_mut().enumerate() {
                    assert_eq!(*x, 0.0);
                    *x = (i * chunk.max(1) + j) as f32;
                }
            });
            assert_eq!(v, (0..n).map(|k| k as f32).collect::<Vec<_>>());
            // SAFETY: the closure writes every value of its chunk and reads none.
            let w = unsafe {
                par_new_overwrite(n, chunk, |i, c| {
                    for (j, x) in c.iter_mut().enumerate() {
                        *x = (i * chunk.max(1) + j) as f32;
                    }
                })
            };
            assert_eq!(w, v);
        }
    }
}
