//! Predicting a training run's total energy and CO2 from its first epoch(s).
//!
//! carbontracker's method (Anthony, Kanding & Selvan 2020, "Carbontracker: Tracking and
//! Predicting the Carbon Footprint of Training Deep Learning Models", ICML workshop,
//! arXiv:2007.03051): monitor the first `k` epochs, then predict the whole run as the mean of the
//! monitored epochs times the total number of epochs `T`:
//!
//! ```text
//! predicted_total = (T / k) x sum_{i<=k} x_i     for x in {duration, energy, CO2}
//! remaining       = predicted_total - sum_{i<=k} x_i
//! ```

use serde::{Deserialize, Serialize};

use crate::emissions::Emissions;
use crate::error::{CarbonError, Result};

/// Duration, energy and CO2 of one epoch (or a sum of epochs).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Seconds.
    pub duration_s: f64,
    /// kWh (after PUE).
    pub energy_kwh: f64,
    /// kg CO2-eq.
    pub emissions_kg: f64,
}

impl EpochRecord {
    fn scale(self, k: f64) -> Self {
        Self {
            duration_s: self.duration_s * k,
            energy_kwh: self.energy_kwh * k,
            emissions_kg: self.emissions_kg * k,
        }
    }
    fn minus(self, o: Self) -> Self {
        Self {
            duration_s: self.duration_s - o.duration_s,
            energy_kwh: self.energy_kwh - o.energy_kwh,
            emissions_kg: self.emissions_kg - o.emissions_kg,
        }
    }
}

/// A prediction of the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Epochs observed so far (`k`).
    pub epochs_observed: usize,
    /// Total epochs of the run (`T`).
    pub total_epochs: usize,
    /// Mean of the observed epochs.
    pub mean_epoch: EpochRecord,
    /// Sum of the observed epochs.
    pub observed: EpochRecord,
    /// Predicted total of all `T` epochs.
    pub predicted_total: EpochRecord,
    /// Predicted remainder (`predicted_total - observed`).
    pub remaining: EpochRecord,
}

/// Collects per-epoch measurements and predicts the total (carbontracker's method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyPredictor {
    total_epochs: usize,
    epochs: Vec<EpochRecord>,
}

impl EnergyPredictor {
    /// A predictor for a run of `total_epochs` epochs.
    ///
    /// # Errors
    /// [`CarbonError::InvalidEpochs`] when `total_epochs` is 0.
    pub fn new(total_epochs: usize) -> Result<Self> {
        if total_epochs == 0 {
            return Err(CarbonError::InvalidEpochs(
                "total_epochs must be > 0, got 0".into(),
            ));
        }
        Ok(Self {
            total_epochs,
            epochs: Vec::new(),
        })
    }

    /// Records one epoch.
    ///
    /// # Errors
    /// [`CarbonError::InvalidMeasurement`] for a negative or non-finite value;
    /// [`CarbonError::InvalidEpochs`] when all `total_epochs` are already recorded.
    pub fn record(&mut self, epoch: EpochRecord) -> Result<()> {
        for (what, v) in [
            ("duration_s", epoch.duration_s),
            ("energy_kwh", epoch.energy_kwh),
            ("emissions_kg", epoch.emissions_kg),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(CarbonError::InvalidMeasurement { what, value: v });
            }
        }
        if self.epochs.len() >= self.total_epochs {
            return Err(CarbonError::InvalidEpochs(format!(
                "all {} epochs already recorded",
                self.total_epochs
            )));
        }
        self.epochs.push(epoch);
        Ok(())
    }

    /// Records one epoch from a tracker's [`Emissions`].
    ///
    /// # Errors
    /// As [`EnergyPredictor::record`].
    pub fn record_emissions(&mut self, e: &Emissions) -> Result<()> {
        self.record(EpochRecord {
            duration_s: e.duration_s,
            energy_kwh: e.energy_kwh,
            emissions_kg: e.emissions_kg,
        })
    }

    /// Epochs recorded so far.
    pub fn epochs_observed(&self) -> usize {
        self.epochs.len()
    }

    /// The prediction, or `None` before the first epoch is recorded.
    pub fn predict(&self) -> Option<Prediction> {
        let k = self.epochs.len();
        if k == 0 {
            return None;
        }
        let observed = self
            .epochs
            .iter()
            .fold(EpochRecord::default(), |a, e| EpochRecord {
                duration_s: a.duration_s + e.duration_s,
                energy_kwh: a.energy_kwh + e.energy_kwh,
                emissions_kg: a.emissions_kg + e.emissions_kg,
            });
        let mean_epoch = observed.scale(1.0 / k as f64);
        let predicted_total = mean_epoch.scale(self.total_epochs as f64);
        Some(Prediction {
            epochs_observed: k,
            total_epochs: self.total_epochs,
            mean_epoch,
            observed,
            predicted_total,
            remaining: predicted_total.minus(observed),
        })
    }
}
