//! [`TrainConfig`]: the hyperparameters of a fine-tuning run, validated once at the boundary.

use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// The learning-rate schedule: a multiplier of every group's base learning rate per optimizer step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Constant learning rate (after the warmup, if any).
    Constant,
    /// Linear warmup from 0 over `ceil(warmup_ratio * total)` steps, then linear decay to 0 at the
    /// last step: transformers' `get_linear_schedule_with_warmup`.
    #[default]
    Linear,
    /// Slanted triangular learning rates (Howard & Ruder 2018, "Universal Language Model
    /// Fine-tuning for Text Classification", eq. 3): a short linear increase over the first
    /// `cut_frac` of the steps, then a long linear decay; the lowest rate is `lr / ratio`.
    /// The paper uses `cut_frac = 0.1`, `ratio = 32`.
    SlantedTriangular {
        /// Fraction of the steps spent increasing, in (0, 1).
        cut_frac: f64,
        /// How much smaller the lowest rate is than the highest, >= 1.
        ratio: f64,
    },
}

/// Hyperparameters of [`crate::train::fine_tune`].
///
/// | field | default | range |
/// |---|---|---|
/// | `epochs` | 3 | >= 1 |
/// | `batch_size` | 16 | >= 1 |
/// | `eval_batch_size` | 64 | >= 1 |
/// | `max_length` | 128 | >= 2 (tokens, special tokens included) |
/// | `learning_rate` | 5e-5 | finite, > 0 |
/// | `weight_decay` | 0.01 | finite, >= 0 (never on biases and layer-norm weights) |
/// | `adam_beta1`, `adam_beta2` | 0.9, 0.999 | [0, 1) |
/// | `adam_epsilon` | 1e-8 | finite, > 0 |
/// | `warmup_ratio` | 0.06 | [0, 1) (used by [`Schedule::Linear`] and `Constant`) |
/// | `schedule` | [`Schedule::Linear`] | |
/// | `max_grad_norm` | `Some(1.0)` | `None` or finite > 0 |
/// | `gradient_accumulation_steps` | 1 | >= 1 |
/// | `seed` | 0 | any (shuffling and dropout) |
/// | `early_stopping_patience` | `None` | `None` or >= 1 evaluations without a lower validation loss |
/// | `eval_every_epochs` | 1 | >= 1 (the last epoch is always evaluated) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Longest sequence in tokens (longer sequences keep their first `max_length - 1` tokens and
    /// their last one, the separator, as the tokenizer's truncation does).
    pub max_length: usize,
    /// Base learning rate (of the default parameter groups).
    pub learning_rate: f64,
    /// Decoupled weight decay (Loshchilov & Hutter 2019) of the default groups.
    pub weight_decay: f64,
    /// AdamW's first-moment decay.
    pub adam_beta1: f64,
    /// AdamW's second-moment decay.
    pub adam_beta2: f64,
    /// AdamW's denominator epsilon.
    pub adam_epsilon: f64,
    /// Fraction of the optimizer steps used for linear warmup.
    pub warmup_ratio: f64,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Clip gradients to this global L2 norm (`torch.nn.utils.clip_grad_norm_`).
    pub max_grad_norm: Option<f64>,
    /// Micro-batches whose gradients are summed (each loss divided by this) per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Seed of the shuffling and the dropout masks.
    pub seed: u64,
    /// Stop after this many evaluations without a lower validation loss.
    pub early_stopping_patience: Option<usize>,
    /// Evaluate on the validation set every this many epochs.
    pub eval_every_epochs: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 16,
            eval_batch_size: 64,
            max_length: 128,
            learning_rate: 5e-5,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            warmup_ratio: 0.06,
            schedule: Schedule::Linear,
            max_grad_norm: Some(1.0),
            gradient_accumulation_steps: 1,
            seed: 0,
            early_stopping_patience: None,
            eval_every_epochs: 1,
        }
    }
}

fn bad(field: &'static str, reason: String) -> ModelError {
    ModelError::TrainConfig { field, reason }
}

impl TrainConfig {
    /// Check every field against the table above.
    ///
    /// # Errors
    /// [`ModelError::TrainConfig`] naming the first bad field and its value.
    pub fn validate(&self) -> Result<()> {
        for (field, v, min) in [
            ("epochs", self.epochs, 1),
            ("batch_size", self.batch_size, 1),
            ("eval_batch_size", self.eval_batch_size, 1),
            ("max_length", self.max_length, 2),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
                1,
            ),
            ("eval_every_epochs", self.eval_every_epochs, 1),
        ] {
            if v < min {
                return Err(bad(field, format!("must be >= {min}, got {v}")));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(bad(
                "learning_rate",
                format!("must be finite and > 0, got {}", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                format!("must be finite and >= 0, got {}", self.weight_decay),
            ));
        }
        for (field, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
            ("warmup_ratio", self.warmup_ratio),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(field, format!("must be in [0, 1), got {v}")));
            }
        }
        if !(self.adam_epsilon.is_finite() && self.adam_epsilon > 0.0) {
            return Err(bad(
                "adam_epsilon",
                format!("must be finite and > 0, got {}", self.adam_epsilon),
            ));
        }
        if let Some(n) = self.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return Err(bad(
                    "max_grad_norm",
                    format!("must be finite and > 0 (or None), got {n}"),
                ));
            }
        }
        if self.early_stopping_patience == Some(0) {
            return Err(bad(
                "early_stopping_patience",
                "must be >= 1 (or None), got 0".into(),
            ));
        }
        if let Schedule::SlantedTriangular { cut_frac, ratio } = self.schedule {
            if !(cut_frac > 0.0 && cut_frac < 1.0) {
                return Err(bad(
                    "schedule.cut_frac",
                    format!("must be in (0, 1), got {cut_frac}"),
                ));
            }
            if !(ratio.is_finite() && ratio >= 1.0) {
                return Err(bad(
                    "schedule.ratio",
                    format!("must be finite and >= 1, got {ratio}"),
                ));
            }
        }
        Ok(())
    }

    /// Optimizer steps per epoch for `n` training examples:
    /// `ceil(ceil(n / batch_size) / gradient_accumulation_steps)`.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size.max(1))
            .div_ceil(self.gradient_accumulation_steps.max(1))
    }

    /// Warmup steps out of `total`: `ceil(warmup_ratio * total)`, as the Hugging Face Trainer.
    pub fn warmup_steps(&self, total: usize) -> usize {
        (self.warmup_ratio * total as f64).ceil() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&j).unwrap(), c);
        let partial: TrainConfig = serde_json::from_str(r#"{"epochs": 5}"#).unwrap();
        assert_eq!(partial.epochs, 5);
        assert_eq!(partial.batch_size, 16);
    }

    #[test]
    fn steps() {
        let c = TrainConfig::default();
        assert_eq!(c.steps_per_epoch(2000), 125);
        assert_eq!(c.warmup_steps(375), 23);
    }
}
