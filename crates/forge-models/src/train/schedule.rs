//! Learning-rate schedules as multipliers of the base rates, per optimizer step.

use super::config::Schedule;

/// The multiplier of every group's base learning rate for the optimizer step `step` (0-based: the
/// first update uses `step = 0`, as a PyTorch `LambdaLR` stepped after `optimizer.step()`), out
/// of `total` steps with `warmup` warmup steps.
///
/// - [`Schedule::Linear`]: `step / warmup` during warmup, then
///   `max(0, (total - step) / (total - warmup))` (transformers' `get_linear_schedule_with_warmup`).
/// - [`Schedule::Constant`]: `step / warmup` during warmup, then 1.
/// - [`Schedule::SlantedTriangular`]: Howard & Ruder 2018, eq. 3, with `T = total`,
///   `cut = floor(T cut_frac)`, `p = t / cut` for `t < cut`, else
///   `1 - (t - cut) / (cut (1 / cut_frac - 1))`, multiplier `(1 + p (ratio - 1)) / ratio`
///   (`warmup` is ignored; the increase is the warmup).
pub fn lr_factor(schedule: Schedule, step: usize, total: usize, warmup: usize) -> f64 {
    let warm = |s: usize| s as f64 / warmup.max(1) as f64;
    match schedule {
        Schedule::Constant => {
            if step < warmup {
                warm(step)
            } else {
                1.0
            }
        }
        Schedule::Linear => {
            if step < warmup {
                warm(step)
            } else {
                ((total as f64 - step as f64) / (total.saturating_sub(warmup)).max(1) as f64)
                    .max(0.0)
            }
        }
        Schedule::SlantedTriangular { cut_frac, ratio } => {
            let cut = ((total as f64 * cut_frac).floor() as usize).max(1);
            let t = step as f64;
            let p = if step < cut {
                t / cut as f64
            } else {
                1.0 - (t - cut as f64) / (cut as f64 * (1.0 / cut_frac - 1.0))
            };
            (1.0 + p.max(0.0) * (ratio - 1.0)) / ratio
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_matches_transformers() {
        // transformers: lr_lambda(0) = 0, lr_lambda(w) = 1, lr_lambda(total) = 0
        let (total, w) = (375, 23);
        assert_eq!(lr_factor(Schedule::Linear, 0, total, w), 0.0);
        assert!((lr_factor(Schedule::Linear, 10, total, w) - 10.0 / 23.0).abs() < 1e-15);
        assert_eq!(lr_factor(Schedule::Linear, 23, total, w), 1.0);
        assert!((lr_factor(Schedule::Linear, 200, total, w) - 175.0 / 352.0).abs() < 1e-15);
        assert_eq!(lr_factor(Schedule::Linear, 375, total, w), 0.0);
        // no warmup: starts at 1
        assert_eq!(lr_factor(Schedule::Linear, 0, 10, 0), 1.0);
    }

    #[test]
    fn slanted_triangular_matches_the_paper() {
        let s = Schedule::SlantedTriangular {
            cut_frac: 0.1,
            ratio: 32.0,
        };
        // T = 100, cut = 10: starts at 1/32, peaks at 1 at t = cut, back to 1/32 at t = T
        assert!((lr_factor(s, 0, 100, 0) - 1.0 / 32.0).abs() < 1e-12);
        assert!((lr_factor(s, 10, 100, 0) - 1.0).abs() < 1e-12);
        assert!((lr_factor(s, 100, 100, 0) - 1.0 / 32.0).abs() < 1e-12);
        // halfway down: t = 55, p = 0.5
        assert!((lr_factor(s, 55, 100, 0) - (1.0 + 0.5 * 31.0) / 32.0).abs() < 1e-12);
    }
}
