//! The production [`Meter`]: forge-carbon's [`CarbonTracker`] around each measurement window.

use crate::error::{BenchError, Result};
use crate::scenario::Meter;
use crate::schema::{CarbonSettings, Measurement};
use forge_carbon::{CarbonConfig, CarbonTracker, Emissions};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Measures with one long-lived [`CarbonTracker`] (started and stopped per window, so the CPU
/// model and TDP are resolved once). Writes no emissions files.
pub struct CarbonMeter {
    tracker: Mutex<CarbonTracker>,
    settings: Mutex<Option<CarbonSettings>>,
}

impl std::fmt::Debug for CarbonMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarbonMeter").finish_non_exhaustive()
    }
}

impl CarbonMeter {
    /// A meter from a configuration (its `output_dir` is cleared: the bench writes its own JSON).
    ///
    /// # Errors
    /// [`BenchError::Carbon`] for an invalid configuration.
    pub fn new(mut config: CarbonConfig) -> Result<Self> {
        config.output_dir = None;
        Ok(Self {
            tracker: Mutex::new(CarbonTracker::new(config)?),
            settings: Mutex::new(None),
        })
    }

    /// A meter from the defaults plus the `FORGE_*` environment overrides
    /// (`FORGE_COUNTRY`, `FORGE_CARBON_INTENSITY`, `FORGE_PUE`, `FORGE_CPU_TDP_W`).
    ///
    /// # Errors
    /// As [`CarbonMeter::new`], and invalid environment values.
    pub fn from_env() -> Result<Self> {
        Self::new(CarbonConfig::from_env()?)
    }
}

/// Converts forge-carbon's [`Emissions`] into the schema's [`Measurement`] (one repeat).
pub fn measurement_from(e: &Emissions) -> Measurement {
    let mut method = BTreeMap::new();
    method.insert("cpu".to_string(), e.cpu_method.as_str().to_string());
    method.insert("ram".to_string(), e.ram_method.as_str().to_string());
    if let Some(g) = e.gpu_method {
        method.insert("gpu".to_string(), g.as_str().to_string());
    }
    Measurement {
        wall_time_s: e.duration_s,
        cpu_kwh: e.cpu_energy_kwh,
        ram_kwh: e.ram_energy_kwh,
        gpu_kwh: e.gpu_energy_kwh,
        total_kwh: e.energy_kwh,
        co2_kg: e.emissions_kg,
        energy_method: method,
        repeats: 1,
    }
}

fn settings_from(e: &Emissions) -> CarbonSettings {
    let mut methods = vec![format!("cpu: {}", e.cpu_method.as_str())];
    if let Some(g) = e.gpu_method {
        methods.push(format!("gpu: {}", g.as_str()));
    }
    methods.push(format!("ram: {}", e.ram_method.as_str()));
    let measured = e.cpu_method.is_measured();
    let note = if measured {
        "CPU energy measured with hardware counters.".to_string()
    } else {
        format!(
            "CPU energy ESTIMATED as this process's CPU time x {:.1} W per logical CPU ({}); no RAPL counters on this machine.",
            e.cpu_w_per_thread.unwrap_or(f64::NAN),
            e.tdp_source.clone().unwrap_or_else(|| "TDP table".into())
        )
    };
    CarbonSettings {
        energy_method: methods.join(", "),
        carbon_intensity_g_per_kwh: e.carbon_intensity_g_per_kwh,
        pue: e.pue,
        region: e.country_iso.clone(),
        note,
    }
}

impl Meter for CarbonMeter {
    fn measure(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<Measurement> {
        let mut t = self
            .tracker
            .lock()
            .map_err(|_| BenchError::config("meter", "tracker mutex poisoned"))?;
        t.start()?;
        let out = f();
        let e = t.stop()?;
        out?;
        if let Ok(mut s) = self.settings.lock() {
            if s.is_none() {
                *s = Some(settings_from(&e));
            }
        }
        Ok(measurement_from(&e))
    }

    fn settings(&self) -> CarbonSettings {
        if let Some(s) = self.settings.lock().ok().and_then(|s| s.clone()) {
            return s;
        }
        // Nothing measured yet: measure an empty window to learn the settings.
        match self.measure(&mut || Ok(())) {
            Ok(_) => self
                .settings
                .lock()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_default(),
            Err(_) => CarbonSettings::default(),
        }
    }
}

/// The forge-carbon tracking mode the environment selects (`process`, the default, or
/// `machine`; `FORGE_TRACKING_MODE`, `CODECARBON_TRACKING_MODE` or `.codecarbon.config`).
///
/// # Errors
/// [`BenchError::Carbon`] for an invalid carbon configuration in the environment.
pub fn tracking_mode_from_env() -> Result<String> {
    Ok(CarbonConfig::from_env()?.tracking_mode.as_str().to_string())
}
