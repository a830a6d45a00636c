//! The per-tensor merge arithmetic on flat `f32` slices.
//!
//! Every kernel performs the same sequence of `f32` roundings as mergekit's PyTorch code
//! (`merge_methods/linear.py`, `generalized_task_arithmetic.py`, `sparsify.py`), element by
//! element, so outputs match it bit for bit where PyTorch's order is defined (see the crate docs
//! for which methods match exactly). Work is split over elements with rayon; each element's
//! arithmetic is independent of the split, so results do not depend on the thread count.

use crate::method::{MergeMethod, Sparsification, TensorParams};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Elements per parallel work item: large enough to amortise scheduling, small enough to
/// balance two to sixteen cores on DistilBERT-size tensors.
const CHUNK: usize = 1 << 15;

/// mergekit's threshold above which |cos| counts as collinear and SLERP falls back to lerp.
pub const SLERP_DOT_THRESHOLD: f32 = 0.9995;
/// mergekit's smallest norm treated as non-zero in SLERP.
const SLERP_EPS: f32 = 1e-8;

/// Weighted sum of `models` (`sum_i w_i x_i`, fused multiply-adds in model order as PyTorch's
/// `addcmul_` does), divided by `sum_i w_i` when `normalize`.
pub fn linear(models: &[&[f32]], weights: &[f64], normalize: bool) -> Vec<f32> {
    let n = models.first().map_or(0, |m| m.len());
    let w: Vec<f32> = weights.iter().map(|&x| x as f32).collect();
    let denom = w.iter().fold(0f32, |a, &b| a + b);
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let off = c * CHUNK;
        for (j, r) in o.iter_mut().enumerate() {
            let mut acc = 0f32;
            for (m, &wi) in models.iter().zip(&w) {
                acc = m[off + j].mul_add(wi, acc);
            }
            *r = if normalize { acc / denom } else { acc };
        }
    });
    out
}

/// Spherical linear interpolation from `v0` (t = 0) to `v1` (t = 1) over the whole tensor, with
/// mergekit's lerp fallback when |cos| > [`SLERP_DOT_THRESHOLD`]. Norms and the dot product are
/// accumulated in f64 (PyTorch accumulates in f32 in its own order, so the two can differ in the
/// last bit; see the crate docs).
pub fn slerp(t: f64, v0: &[f32], v1: &[f32]) -> Vec<f32> {
    let t = t as f32;
    let sumsq = |v: &[f32]| -> f64 {
        v.par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
            .sum()
    };
    let fix = |n: f32| if n > SLERP_EPS { n } else { 1.0 };
    let na = fix(sumsq(v0).sqrt() as f32);
    let nb = fix(sumsq(v1).sqrt() as f32);
    let dot: f64 = v0
        .par_chunks(CHUNK)
        .zip(v1.par_chunks(CHUNK))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| f64::from((x / na) * (y / nb)))
                .sum::<f64>()
        })
        .sum();
    let dot = (dot as f32).clamp(-1.0, 1.0);
    let collinear = dot.abs() > SLERP_DOT_THRESHOLD;
    let (ca, cb) = if collinear {
        (1.0 - t, t)
    } else {
        let theta = dot.acos();
        let s = theta.sin();
        (((1.0 - t) * theta).sin() / s, (t * theta).sin() / s)
    };
    let mut out = vec![0f32; v0.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let off = c * CHUNK;
        for (j, r) in o.iter_mut().enumerate() {
            *r = ca * v0[off + j] + cb * v1[off + j];
        }
    });
    out
}

/// A stream of DARE's random drops, independent of processing order: derived from the seed,
/// the tensor name and the model index.
fn dare_rng(seed: u64, tensor: &str, model: usize) -> rand_chacha::ChaCha8Rng {
    // FNV-1a over the name: stable across platforms and Rust versions (unlike DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tensor.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let stream = h ^ (model as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// PyTorch's CPU comparator for a descending sort (`KeyValueCompDesc`): NaN first, then larger.
#[inline]
fn desc(a: f32, b: f32) -> bool {
    (a.is_nan() && !b.is_nan()) || a > b
}

/// Keep the `k` largest magnitudes of `d`, zeroing the rest as PyTorch's `d * mask` does (a
/// dropped negative entry becomes -0.0).
///
/// Which of several equal magnitudes at the cut are kept is decided exactly as
/// `torch.argsort(|d|, descending=True)[:k]` does on CPU: PyTorch sorts (value, index) pairs with
/// libstdc++'s `std::sort` (introsort: median-of-three pivot, unguarded partition, depth limit
/// 2 floor(log2 n) then heapsort, final insertion sort below 16 elements). The same steps are
/// replayed here, but only on the segment that contains position `k` (an introselect): the other
/// segments are wholly kept or wholly dropped whatever their internal order, so this is O(n)
/// expected instead of a full sort, and its result is the same set as PyTorch's.
///
/// Fast path: the k-th largest magnitude `t` is found by an unstable selection on the
/// magnitudes alone; when no run of values equal to `t` straddles the cut (more than `k - #{> t}`
/// entries equal to `t`), the kept set is exactly `{|x| >= t}` whatever the tie-breaking, and the
/// index-tracking introselect is skipped. Only ties at the cut (e.g. many unchanged entries, all
/// zero) take the exact replay.
fn keep_top_k(d: &mut [f32], k: usize) {
    let n = d.len();
    if k >= n {
        return;
    }
    if k == 0 {
        d.iter_mut().for_each(|x| *x *= 0.0);
        return;
    }
    {
        let mut w: Vec<f32> = d.par_iter().map(|x| x.abs()).collect();
        let (_, t, _) = w.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        let t = *t;
        drop(w);
        if !t.is_nan() {
            let (gt, eq) = d
                .par_chunks(CHUNK)
                .map(|c| {
                    c.iter().fold((0usize, 0usize), |(g, e), x| {
                        let a = x.abs();
                        (g + usize::from(a > t), e + usize::from(a == t))
                    })
                })
                .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            if gt + eq == k && !d.iter().any(|x| x.is_nan()) {
                d.par_chunks_mut(CHUNK).for_each(|c| {
                    c.iter_mut().for_each(|x| {
                        if x.abs() < t {
                            *x *= 0.0;
                        }
                    })
                });
                return;
            }
        }
    }
    let mut v: Vec<f32> = d.par_iter().map(|x| x.abs()).collect();
    let mut ix: Vec<u32> = (0..n as u32).collect();
    introselect(&mut v, &mut ix, k);
    for &i in &ix[k..] {
        d[i as usize] *= 0.0;
    }
}

/// libstdc++'s `_S_threshold`: segments at most this long are left to the final insertion sort.
const SORT_THRESHOLD: usize = 16;

/// Rearrange (v, ix) so that positions `[0, k)` hold exactly the elements libstdc++'s
/// `std::sort(.., desc)` would put there.
fn introselect(v: &mut [f32], ix: &mut [u32], k: usize) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let (mut first, mut last) = (0usize, n);
    let mut depth = 2 * (usize::BITS - 1 - n.leading_zeros()) as usize;
    while last - first > SORT_THRESHOLD {
        if k <= first || k >= last {
            return; // this segment is wholly kept or wholly dropped
        }
        if depth == 0 {
            heap_sort(&mut v[first..last], &mut ix[first..last]);
            return;
        }
        depth -= 1;
        let mid = first + (last - first) / 2;
        move_median_to_first(v, ix, first, first + 1, mid, last - 1);
        let cut = unguarded_partition(v, ix, first + 1, last, first);
        // std::sort recurses into [cut, last) and loops on [first, cut).
        if k > cut {
            first = cut;
        } else {
            last = cut;
        }
    }
    if k > first && k < last {
        insertion_sort(&mut v[first..last], &mut ix[first..last]);
    }
}

#[inline]
fn swap2(v: &mut [f32], ix: &mut [u32], a: usize, b: usize) {
    v.swap(a, b);
    ix.swap(a, b);
}

fn move_median_to_first(v: &mut [f32], ix: &mut [u32], res: usize, a: usize, b: usize, c: usize) {
    let pick = if desc(v[a], v[b]) {
        if desc(v[b], v[c]) {
            b
        } else if desc(v[a], v[c]) {
            c
        } else {
            a
        }
    } else if desc(v[a], v[c]) {
        a
    } else if desc(v[b], v[c]) {
        c
    } else {
        b
    };
    swap2(v, ix, res, pick);
}

fn unguarded_partition(
    v: &mut [f32],
    ix: &mut [u32],
    mut first: usize,
    mut last: usize,
    pivot: usize,
) -> usize {
    loop {
        while desc(v[first], v[pivot]) {
            first += 1;
        }
        last -= 1;
        while desc(v[pivot], v[last]) {
            last -= 1;
        }
        if first >= last {
            return first;
        }
        swap2(v, ix, first, last);
        first += 1;
    }
}

/// Stable insertion sort (the result of libstdc++'s final insertion sort on one segment).
fn insertion_sort(v: &mut [f32], ix: &mut [u32]) {
    for i in 1..v.len() {
        let (val, id) = (v[i], ix[i]);
        let mut j = i;
        while j > 0 && desc(val, v[j - 1]) {
            v[j] = v[j - 1];
            ix[j] = ix[j - 1];
            j -= 1;
        }
        v[j] = val;
        ix[j] = id;
    }
}

/// libstdc++'s `__partial_sort(first, last, last)`: `__make_heap` then `__sort_heap`.
fn heap_sort(v: &mut [f32], ix: &mut [u32]) {
    let len = v.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let val = (v[parent], ix[parent]);
        adjust_heap(v, ix, parent, len, val);
        if parent == 0 {
            break;
        }
        parent -= 1;
    }
    let mut last = len;
    while last > 1 {
        last -= 1;
        // __pop_heap(first, last, last): move the top to `last`, sift the old `last` value.
        let val = (v[last], ix[last]);
        v[last] = v[0];
        ix[last] = ix[0];
        adjust_heap(v, ix, 0, last, val);
    }
}

fn adjust_heap(v: &mut [f32], ix: &mut [u32], mut hole: usize, len: usize, val: (f32, u32)) {
    let top = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if desc(v[child], v[child - 1]) {
            child -= 1;
        }
        v[hole] = v[child];
        ix[hole] = ix[child];
        hole = child;
    }
    if len & 1 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        v[hole] = v[child - 1];
        ix[hole] = ix[child - 1];
        hole = child - 1;
    }
    // __push_heap
    let mut parent = hole.wrapping_sub(1) / 2;
    while hole > top && desc(v[parent], val.0) {
        v[hole] = v[parent];
        ix[hole] = ix[parent];
        hole = parent;
        parent = hole.wrapping_sub(1) / 2;
    }
    v[hole] = val.0;
    ix[hole] = val.1;
}

/// Breadcrumbs: sort magnitudes ascending, keep positions `[n_bot, n_bot + target)`.
fn keep_middle(d: &mut [f32], density: f64, gamma: f64) {
    let n = d.len();
    let target = (density * n as f64) as usize;
    let n_top = (gamma * n as f64) as usize;
    let n_bot = n.saturating_sub(target + n_top);
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.par_sort_unstable_by(|&a, &b| {
        d[a as usize]
            .abs()
            .total_cmp(&d[b as usize].abs())
            .then(a.cmp(&b))
    });
    let mut keep = vec![false; n];
    for &i in &idx[n_bot..(n_bot + target).min(n)] {
        keep[i as usize] = true;
    }
    for (x, k) in d.iter_mut().zip(keep) {
        if !k {
            *x *= 0.0;
        }
    }
}

/// L1 rescaling of a sparsified delta to the norm of the original (mergekit's `rescale` for the
/// magnitude-based sparsifications).
fn rescale_l1(d: &mut [f32], before: f64) {
    let after: f64 = d.par_iter().map(|x| f64::from(x.abs())).sum();
    const EPS: f64 = 1e-7;
    if before < EPS || after < EPS {
        return;
    }
    let s = (before / after) as f32;
    d.par_iter_mut().for_each(|x| *x *= s);
}

/// Sparsify one task vector in place.
/// The method-specific settings of [`sparsify`].
#[derive(Debug, Clone, Copy)]
struct SparsifyShape {
    /// Breadcrumbs' outlier fraction.
    gamma: f64,
    /// DELLA's half-width of the keep-probability range.
    epsilon: f64,
    /// Entries per row (DELLA ranks within rows); 0 = one row.
    row_len: usize,
}

fn sparsify(
    d: &mut [f32],
    method: Sparsification,
    density: f64,
    shape: SparsifyShape,
    rescale: bool,
    rng: impl FnOnce() -> rand_chacha::ChaCha8Rng,
) {
    let gamma = shape.gamma;
    if density >= 1.0 || d.is_empty() {
        return;
    }
    let l1_before = |d: &[f32]| -> f64 { d.par_iter().map(|x| f64::from(x.abs())).sum() };
    match method {
        Sparsification::None => {}
        Sparsification::Magnitude => {
            let before = rescale.then(|| l1_before(d));
            let k = ((density * d.len() as f64) as usize).max(1);
            keep_top_k(d, k);
            if let Some(b) = before {
                rescale_l1(d, b);
            }
        }
        Sparsification::MagnitudeOutliers => {
            let before = rescale.then(|| l1_before(d));
            keep_middle(d, density, gamma);
            if let Some(b) = before {
                rescale_l1(d, b);
            }
        }
        Sparsification::Random => {
            // DARE (Yu et al. 2024): drop with probability p = 1 - density, rescale the
            // survivors by 1 / (1 - p).
            let mut rng = rng();
            let keep_p = density as f32;
            let scale = density as f32;
            for x in d.iter_mut() {
                let u: f32 = rng.random();
                if u < keep_p {
                    if rescale {
                        *x /= scale;
                    }
                } else {
                    *x *= 0.0;
                }
            }
        }
        Sparsification::MagnitudeSampling => {
            magprune(
                d,
                density,
                shape.epsilon,
                shape.row_len,
                rescale,
                &mut rng(),
            );
        }
    }
}

/// DELLA's MAGPRUNE (Deep et al. 2024, section 3): within each row of `row_len` entries (the
/// whole slice when 0), entries are ranked by magnitude (rank 0 = smallest) and kept with
/// probability `p_i = density - epsilon + 2 epsilon rank_i / (n - 1)` (`density` for a
/// one-entry row); survivors are divided by `p_i` when `rescale` (the paper's rescaling, so that
/// the expected task vector is unchanged; mergekit instead matches the L1 norm), dropped
/// entries become zero (-0.0 for negatives, as a multiplication by a zero mask).
fn magprune(
    d: &mut [f32],
    density: f64,
    epsilon: f64,
    row_len: usize,
    rescale: bool,
    rng: &mut rand_chacha::ChaCha8Rng,
) {
    let n = if row_len == 0 { d.len() } else { row_len };
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for row in d.chunks_mut(n.max(1)) {
        let m = row.len();
        order.clear();
        order.extend(0..m);
        order.sort_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()).then(a.cmp(&b)));
        let mut prob = vec![density; m];
        if m > 1 {
            for (rank, &i) in order.iter().enumerate() {
                prob[i] = density - epsilon + 2.0 * epsilon * rank as f64 / (m - 1) as f64;
            }
        }
        for (x, &p) in row.iter_mut().zip(&prob) {
            let u: f64 = rng.random();
            if u < p {
                if rescale {
                    *x = (f64::from(*x) / p) as f32;
                }
            } else {
                *x *= 0.0;
            }
        }
    }
}

/// The task-arithmetic family (task arithmetic, TIES, DARE, breadcrumbs): mergekit's
/// `GeneralizedTaskArithmeticMerge`, element by element with the same `f32` roundings:
/// `delta_i = x_i - base`, sparsified, times `w_i`; with sign consensus the entries agreeing
/// with `sign(sum_i delta_i)` are summed and divided by the sum of their weights, otherwise all
/// are summed and divided by `sum_i w_i` (when `normalize`); times `lambda`; plus `base`.
pub fn task_arithmetic_family(
    method: MergeMethod,
    base: &[f32],
    models: &[&[f32]],
    p: &TensorParams,
    tensor: &str,
) -> Vec<f32> {
    let n = base.len();
    let sp = method.sparsification();
    let mut deltas: Vec<Vec<f32>> = models
        .par_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut d: Vec<f32> = m.iter().zip(base).map(|(&x, &b)| x - b).collect();
            let shape = SparsifyShape {
                gamma: p.gammas[i],
                epsilon: p.epsilons[i],
                row_len: p.row_len,
            };
            sparsify(&mut d, sp, p.densities[i], shape, p.rescale, || {
                dare_rng(p.seed, tensor, i)
            });
            let w = p.weights[i] as f32;
            d.iter_mut().for_each(|x| *x *= w);
            d
        })
        .collect();
    let w: Vec<f32> = p.weights.iter().map(|&x| x as f32).collect();
    let consensus = method.sign_consensus();
    let lambda = p.lambda as f32;
    let apply_lambda = p.lambda != 1.0;
    let plain_divisor = {
        let s = w.iter().fold(0f32, |a, &b| a + b);
        if s.abs() < 1e-8 {
            1.0
        } else {
            s
        }
    };
    // Reuse the first delta's buffer for the output.
    let mut out = std::mem::take(&mut deltas[0]);
    let rest = &deltas[1..];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let off = c * CHUNK;
        for (j, r) in o.iter_mut().enumerate() {
            let e = off + j;
            let d0 = *r;
            let get = |i: usize| if i == 0 { d0 } else { rest[i - 1][e] };
            let (mut mixed, divisor) = if consensus {
                let mut s = 0f32;
                for i in 0..w.len() {
                    s += get(i);
                }
                let majority = if s >= 0.0 { 1f32 } else { -1f32 };
                let (mut m, mut dv) = (0f32, 0f32);
                for (i, &wi) in w.iter().enumerate() {
                    let di = get(i);
                    let agree = if torch_sign(di) == majority {
                        1f32
                    } else {
                        0f32
                    };
                    m += di * agree;
                    dv += wi * agree;
                }
                (m, if dv == 0.0 { 1.0 } else { dv })
            } else {
                let mut m = 0f32;
                for i in 0..w.len() {
                    m += get(i);
                }
                (m, plain_divisor)
            };
            if p.normalize {
                mixed /= divisor;
            }
            if apply_lambda {
                mixed *= lambda;
            }
            *r = base[e] + mixed;
        }
    });
    debug_assert_eq!(out.len(), n);
    out
}

/// PyTorch's `sign` for floats: -1, 0 (for ±0) or 1; NaN stays NaN (never equal to a sign).
fn torch_sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else if x == 0.0 {
        0.0
    } else {
        f32::NAN
    }
}

/// Index and value of the first non-finite element, if any.
pub fn first_non_finite(v: &[f32]) -> Option<(usize, f32)> {
    v.par_iter()
        .position_first(|x| !x.is_finite())
        .map(|i| (i, v[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_fast_path_and_exact_replay_agree() {
        // distinct magnitudes (fast path) and heavy ties at the cut (exact replay) against the
        // replay alone, on the same data
        let replay = |d: &mut [f32], k: usize| {
            let mut v: Vec<f32> = d.iter().map(|x| x.abs()).collect();
            let mut ix: Vec<u32> = (0..d.len() as u32).collect();
            introselect(&mut v, &mut ix, k);
            for &i in &ix[k..] {
                d[i as usize] *= 0.0;
            }
        };
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for case in 0..4 {
            let d0: Vec<f32> = (0..5000)
                .map(|i| match case {
                    0 => next(),
                    1 if i % 3 == 0 => 0.0,
                    1 => next(),
                    2 => (next() * 8.0).round() / 8.0,
                    _ => -0.0,
                })
                .collect();
            for k in [1, 17, 1666, 2500, 4999] {
                let (mut a, mut b) = (d0.clone(), d0.clone());
                keep_top_k(&mut a, k);
                replay(&mut b, k);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "case {case}, k {k}");
            }
        }
    }

    #[test]
    fn top_k_keeps_the_largest_and_breaks_ties_by_index() {
        let mut d = vec![0.5, -3.0, 1.0, -1.0, 2.0, 1.0];
        keep_top_k(&mut d, 4);
        assert_eq!(d, vec![0.0, -3.0, 1.0, -1.0, 2.0, 0.0]);
        assert!(d[5].is_sign_positive());
        let mut e = vec![-0.5, 4.0];
        keep_top_k(&mut e, 1);
        assert!(e[0] == 0.0 && e[0].is_sign_negative());
    }

    #[test]
    fn introselect_keeps_a_valid_top_k_on_heavy_ties() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [17usize, 100, 1000, 50_000] {
            for k in [1, n / 3, n / 2, n - 1] {
                let d: Vec<f32> = (0..n).map(|_| rng.random_range(-4i32..5) as f32).collect();
                let mut v: Vec<f32> = d.iter().map(|x| x.abs()).collect();
                let mut ix: Vec<u32> = (0..n as u32).collect();
                introselect(&mut v, &mut ix, k);
                let kept_min = ix[..k]
                    .iter()
                    .map(|&i| d[i as usize].abs())
                    .fold(f32::MAX, f32::min);
                let dropped_max = ix[k..]
                    .iter()
                    .map(|&i| d[i as usize].abs())
                    .fold(0f32, f32::max);
                assert!(kept_min >= dropped_max, "n={n} k={k}");
                let mut all: Vec<u32> = ix.clone();
                all.sort_unstable();
                assert!(all.iter().enumerate().all(|(i, &x)| i as u32 == x));
            }
        }
        // The heapsort fallback sorts descending.
        let mut v = vec![3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let mut ix: Vec<u32> = (0..8).collect();
        heap_sort(&mut v, &mut ix);
        assert_eq!(v, vec![9.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0]);
    }

    #[test]
    fn ties_by_hand() {
        // Two models, one element each side of the sign vote.
        let base = [0.0f32, 0.0, 0.0];
        let a = [1.0f32, -2.0, 0.5];
        let b = [3.0f32, 1.0, -0.25];
        let mut p = TensorParams::new(MergeMethod::Ties, 2);
        p.weights = vec![1.0, 1.0];
        let out = task_arithmetic_family(MergeMethod::Ties, &base, &[&a, &b], &p, "w");
        // elem 0: both positive -> mean 2; elem 1: sum -1 -> only -2 agrees -> -2;
        // elem 2: sum 0.25 >= 0 -> only 0.5 agrees -> 0.5.
        assert_eq!(out, vec![2.0, -2.0, 0.5]);
    }

    #[test]
    fn slerp_endpoints_and_lerp_fallback() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let mid = slerp(0.5, &a, &b);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((mid[0] - h).abs() < 1e-6 && (mid[1] - h).abs() < 1e-6);
        assert_eq!(slerp(0.0, &a, &b), vec![1.0, 0.0]);
        // Collinear: plain lerp.
        let c = [2.0f32, 0.0];
        assert_eq!(slerp(0.25, &a, &c), vec![0.75 + 0.5, 0.0]);
    }

    #[test]
    fn dare_streams_are_independent_of_order() {
        let mut a = dare_rng(7, "x", 1);
        let mut b = dare_rng(7, "x", 1);
        let mut c = dare_rng(7, "x", 0);
        let (x, y, z): (u64, u64, u64) = (a.random(), b.random(), c.random());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
