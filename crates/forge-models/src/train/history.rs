//! [`History`]: what a fine-tuning run did, per epoch and in total, serialisable to JSON.

use super::config::TrainConfig;
use super::metrics::EvalMetrics;
use crate::{ModelError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One epoch of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's examples (task loss, penalties excluded).
    pub train_loss: f64,
    /// Mean penalty over the epoch's optimizer steps (0 without penalties).
    pub penalty: f64,
    /// Learning rate of the first group at the epoch's last step.
    pub lr: f64,
    /// Validation metrics, when evaluated this epoch.
    pub val: Option<EvalMetrics>,
    /// Wall time of the epoch (training and evaluation), seconds.
    pub wall_seconds: f64,
    /// Named scalars added by callbacks (e.g. `"energy_kwh"`, `"co2_kg"`).
    pub scalars: BTreeMap<String, f64>,
}

/// The record of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The configuration used.
    pub config: TrainConfig,
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// The task loss of every optimizer step, in order.
    pub step_losses: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Trainable parameters at the start.
    pub trainable_parameters: usize,
    /// Wall time of the whole run, seconds.
    pub wall_seconds: f64,
    /// Why the run stopped early (a callback or early stopping), if it did.
    pub stopped: Option<String>,
    /// The epoch with the lowest validation loss, if any evaluation ran.
    pub best_epoch: Option<usize>,
    /// Run totals added by callbacks (e.g. `"energy_kwh"`, `"co2_kg"`).
    pub scalars: BTreeMap<String, f64>,
}

impl History {
    pub(crate) fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epochs: vec![],
            step_losses: vec![],
            steps: 0,
            trainable_parameters: 0,
            wall_seconds: 0.0,
            stopped: None,
            best_epoch: None,
            scalars: BTreeMap::new(),
        }
    }

    /// The last validation metrics, if any.
    pub fn last_val(&self) -> Option<&EvalMetrics> {
        self.epochs.iter().rev().find_map(|e| e.val.as_ref())
    }

    /// Pretty JSON.
    ///
    /// # Errors
    /// [`ModelError::InvalidInput`] if a value cannot be serialised (non-finite floats are
    /// written as `null` by serde_json, so this does not happen in practice).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| ModelError::InvalidInput {
            what: "history",
            reason: e.to_string(),
        })
    }

    /// Write [`History::to_json`] atomically (temp file, fsync, rename).
    ///
    /// # Errors
    /// [`ModelError::Io`] naming the path.
    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        forge_lora::io::write_atomic(path, text.as_bytes()).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}
