//! An online negative-transfer monitor: stop a fine-tuning run whose validation loss stays
//! worse than a baseline, and warn when the parameters drift far from their pretrained values.
//!
//! The baseline is the validation loss of the model one would otherwise keep: the frozen
//! pretrained model with a fitted head, a target-only model, or a supplied figure. A run that
//! is worse than the baseline for `patience` consecutive observations transfers negatively
//! (Rosenstein et al. 2005, "To Transfer or Not To Transfer"; Wang et al. 2019, "Characterizing
//! and Avoiding Negative Transfer", CVPR): the monitor says [`MonitorDecision::Stop`]. This is
//! early stopping (Prechelt 1998, "Early Stopping — But When?") measured against the
//! alternative instead of against the run's own best. A non-finite loss, or one above
//! `divergence_ratio` times the baseline, stops at once (a diverged run).
//!
//! The monitor is model-agnostic: forge-bench wraps it as a forge-models training callback
//! (`observe` once per evaluation, `Stop` -> the callback's stop control).
//!
//! ```
//! use forge_safety::monitor::{MonitorConfig, MonitorDecision, NegativeTransferMonitor};
//! let mut m = NegativeTransferMonitor::new(0.50, MonitorConfig { patience: 2, ..Default::default() })?;
//! assert!(matches!(m.observe(0, 0.45), MonitorDecision::Continue));
//! assert!(matches!(m.observe(1, 0.60), MonitorDecision::Warn { .. }));
//! assert!(matches!(m.observe(2, 0.70), MonitorDecision::Stop { .. }));
//! # Ok::<(), forge_safety::SafetyError>(())
//! ```

use crate::drift::DriftReport;
use crate::{Result, SafetyError};
use serde::{Deserialize, Serialize};

/// Settings of [`NegativeTransferMonitor`].
///
/// | field | default | range |
/// |---|---|---|
/// | `patience` | 2 observations | >= 1 |
/// | `min_delta` | 0.0 (a loss above `baseline + min_delta` is worse) | >= 0 |
/// | `divergence_ratio` | 3.0 (loss > 3 x baseline stops at once) | > 1 |
/// | `warmup` | 0 observations not judged against the baseline | |
/// | `drift_warn_relative` | 0.5 (a layer moved by half its pretrained norm) | > 0 |
/// | `drift_stop_relative` | `None` (drift only warns) | > `drift_warn_relative` |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Consecutive observations worse than the baseline that stop the run.
    pub patience: usize,
    /// Margin: worse means `val_loss > baseline + min_delta`.
    pub min_delta: f64,
    /// Stop at once when `val_loss > divergence_ratio * baseline`.
    pub divergence_ratio: f64,
    /// Observations at the start that are recorded but not judged.
    pub warmup: usize,
    /// Relative layer drift that triggers a warning.
    pub drift_warn_relative: f64,
    /// Relative layer drift that stops the run.
    pub drift_stop_relative: Option<f64>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            patience: 2,
            min_delta: 0.0,
            divergence_ratio: 3.0,
            warmup: 0,
            drift_warn_relative: 0.5,
            drift_stop_relative: None,
        }
    }
}

/// What the training loop should do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MonitorDecision {
    /// Keep training.
    Continue,
    /// Keep training, but something looks wrong.
    Warn {
        /// Why.
        reasons: Vec<String>,
    },
    /// Stop: negative transfer or divergence.
    Stop {
        /// Why.
        reason: String,
    },
}

impl MonitorDecision {
    /// Whether this is [`MonitorDecision::Stop`].
    pub fn is_stop(&self) -> bool {
        matches!(self, Self::Stop { .. })
    }
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The epoch (or evaluation index) given.
    pub epoch: usize,
    /// The validation loss.
    pub val_loss: f64,
    /// Whether it was worse than the baseline.
    pub worse_than_baseline: bool,
}

/// Watches validation losses against a baseline; see the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NegativeTransferMonitor {
    config: MonitorConfig,
    baseline: f64,
    bad_streak: usize,
    best: Option<(usize, f64)>,
    history: Vec<Observation>,
    pending_warnings: Vec<String>,
    stopped: Option<String>,
}

impl NegativeTransferMonitor {
    /// A monitor against `baseline_loss` (the validation loss of the alternative to this run).
    ///
    /// # Errors
    /// [`SafetyError::InvalidArgument`] for a non-finite or negative baseline, `patience = 0`,
    /// `min_delta < 0`, `divergence_ratio <= 1`, or drift thresholds out of range.
    pub fn new(baseline_loss: f64, config: MonitorConfig) -> Result<Self> {
        let bad =
            |name: &'static str, reason: String| Err(SafetyError::InvalidArgument { name, reason });
        if !(baseline_loss.is_finite() && baseline_loss >= 0.0) {
            return bad(
                "baseline_loss",
                format!("must be finite and >= 0, got {baseline_loss}"),
            );
        }
        if config.patience == 0 {
            return bad("patience", "must be >= 1, got 0".into());
        }
        if !(config.min_delta >= 0.0 && config.min_delta.is_finite()) {
            return bad(
                "min_delta",
                format!("must be finite and >= 0, got {}", config.min_delta),
            );
        }
        if config.divergence_ratio.is_nan() || config.divergence_ratio <= 1.0 {
            return bad(
                "divergence_ratio",
                format!("must be > 1, got {}", config.divergence_ratio),
            );
        }
        if config.drift_warn_relative.is_nan() || config.drift_warn_relative <= 0.0 {
            return bad(
                "drift_warn_relative",
                format!("must be > 0, got {}", config.drift_warn_relative),
            );
        }
        if let Some(s) = config.drift_stop_relative {
            if s.is_nan() || s <= config.drift_warn_relative {
                return bad(
                    "drift_stop_relative",
                    format!(
                        "must exceed drift_warn_relative {}, got {s}",
                        config.drift_warn_relative
                    ),
                );
            }
        }
        Ok(Self {
            config,
            baseline: baseline_loss,
            bad_streak: 0,
            best: None,
            history: Vec::new(),
            pending_warnings: Vec::new(),
            stopped: None,
        })
    }

    /// Records the validation loss after `epoch` and decides. Once stopped, every later call
    /// returns the same `Stop`.
    pub fn observe(&mut self, epoch: usize, val_loss: f64) -> MonitorDecision {
        if let Some(reason) = &self.stopped {
            return MonitorDecision::Stop {
                reason: reason.clone(),
            };
        }
        let judged = self.history.len() >= self.config.warmup;
        let worse = !val_loss.is_finite() || val_loss > self.baseline + self.config.min_delta;
        self.history.push(Observation {
            epoch,
            val_loss,
            worse_than_baseline: worse,
        });
        if val_loss.is_finite() && self.best.is_none_or(|(_, b)| val_loss < b) {
            self.best = Some((epoch, val_loss));
        }
        let mut warnings = std::mem::take(&mut self.pending_warnings);
        if !val_loss.is_finite() {
            return self.stop(format!(
                "validation loss is {val_loss} at epoch {epoch}: the run diverged"
            ));
        }
        if val_loss > self.config.divergence_ratio * self.baseline && self.baseline > 0.0 {
            return self.stop(format!(
                "validation loss {val_loss:.4} at epoch {epoch} exceeds {} x the baseline {:.4}: the run diverged",
                self.config.divergence_ratio, self.baseline
            ));
        }
        if !judged {
            return Self::warn_or_continue(warnings);
        }
        if worse {
            self.bad_streak += 1;
            if self.bad_streak >= self.config.patience {
                return self.stop(format!(
                    "negative transfer: validation loss above the baseline {:.4} (+{}) for {} consecutive evaluations (latest {val_loss:.4} at epoch {epoch})",
                    self.baseline, self.config.min_delta, self.bad_streak
                ));
            }
            warnings.push(format!(
                "validation loss {val_loss:.4} at epoch {epoch} is above the baseline {:.4} ({} of {} allowed)",
                self.baseline, self.bad_streak, self.config.patience
            ));
        } else {
            self.bad_streak = 0;
        }
        Self::warn_or_continue(warnings)
    }

    /// Checks a parameter-drift report: layers whose relative drift exceeds
    /// `drift_warn_relative` give a warning (returned now and repeated with the next
    /// [`observe`](Self::observe)); above `drift_stop_relative` the run stops.
    pub fn observe_drift(&mut self, drift: &DriftReport) -> MonitorDecision {
        if let Some(reason) = &self.stopped {
            return MonitorDecision::Stop {
                reason: reason.clone(),
            };
        }
        let mut warnings = Vec::new();
        for l in &drift.layers {
            let Some(r) = l.relative else { continue };
            if let Some(s) = self.config.drift_stop_relative.filter(|s| r > *s) {
                return self.stop(format!(
                    "layer {} drifted by {r:.3} of its pretrained norm (stop threshold {s})",
                    l.layer
                ));
            }
            if r > self.config.drift_warn_relative {
                warnings.push(format!(
                    "layer {} drifted by {r:.3} of its pretrained norm (warning threshold {})",
                    l.layer, self.config.drift_warn_relative
                ));
            }
        }
        self.pending_warnings.extend(warnings.iter().cloned());
        Self::warn_or_continue(warnings)
    }

    fn stop(&mut self, reason: String) -> MonitorDecision {
        self.stopped = Some(reason.clone());
        MonitorDecision::Stop { reason }
    }

    fn warn_or_continue(reasons: Vec<String>) -> MonitorDecision {
        if reasons.is_empty() {
            MonitorDecision::Continue
        } else {
            MonitorDecision::Warn { reasons }
        }
    }

    /// The baseline loss.
    pub fn baseline(&self) -> f64 {
        self.baseline
    }

    /// Every observation so far.
    pub fn history(&self) -> &[Observation] {
        &self.history
    }

    /// The best (lowest finite) validation loss and its epoch.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }

    /// The stop reason, once stopped.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stopped.as_deref()
    }
}
