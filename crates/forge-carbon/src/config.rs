//! Tracker configuration: location, PUE, hardware overrides and output.
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `project_name` | `"forge"` | CodeCarbon's `project_name` column |
//! | `experiment_id` | `""` | CodeCarbon's `experiment_id` column |
//! | `country_iso` | `"WLD"` | ISO 3166-1 alpha-3 code looked up in [`crate::intensity`]; `WLD` = world average (475 g/kWh, as CodeCarbon) |
//! | `region` | `None` | free-text region, recorded only |
//! | `carbon_intensity_g_per_kwh` | `None` | overrides the country table |
//! | `pue` | `1.0` ([`DEFAULT_PUE`]) | power usage effectiveness; 1.0 = energy at the machine, as CodeCarbon's default |
//! | `tdp_w` | `None` | full-load power of all logical CPUs visible to the OS; overrides the TDP table |
//! | `ram_w_per_gb` | `0.375` ([`crate::ram::DEFAULT_RAM_W_PER_GB`]) | RAM power model |
//! | `output_dir` | `None` | where `stop()` appends `emissions.csv` and `emissions.json`; `None` = no files |
//! | `powercap_root` | `/sys/class/powercap` | RAPL sysfs root (tests point it at a fake tree) |
//! | `use_rapl` / `use_nvml` | `true` | allow the measured sources when present |
//! | `sample_interval_ms` | `500` | background sampling period (RAPL wraparound guard, NVML power) |
//!
//! Environment overrides ([`CarbonConfig::from_env`]): `FORGE_PUE`, `FORGE_CARBON_INTENSITY` (g/kWh),
//! `FORGE_COUNTRY` (ISO alpha-3), `FORGE_CPU_TDP_W`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CarbonError, Result};

/// Default power usage effectiveness: 1.0, CodeCarbon's default (energy counted at the machine).
///
/// For a typical data centre set the Uptime Institute Global Data Center Survey 2023 average, 1.58
/// (carbontracker, Anthony et al. 2020, uses the 2019 survey's 1.58 as well).
pub const DEFAULT_PUE: f64 = 1.0;

/// Default sampling period of the background sampler, in milliseconds.
pub const DEFAULT_SAMPLE_INTERVAL_MS: u64 = 500;

/// Configuration of a [`crate::CarbonTracker`]. See the module docs for the defaults table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CarbonConfig {
    /// Project name (CodeCarbon's `project_name`).
    pub project_name: String,
    /// Experiment identifier (CodeCarbon's `experiment_id`).
    pub experiment_id: String,
    /// ISO 3166-1 alpha-3 country code, or `"WLD"` for the world average.
    pub country_iso: String,
    /// Free-text region (recorded, not used for the intensity).
    pub region: Option<String>,
    /// Carbon intensity override in g CO2-eq per kWh; `None` = the country table.
    pub carbon_intensity_g_per_kwh: Option<f64>,
    /// Power usage effectiveness (>= 1.0).
    pub pue: f64,
    /// CPU full-load power in watts for all logical CPUs visible to the OS; `None` = TDP table.
    pub tdp_w: Option<f64>,
    /// RAM power per GB of resident memory, in W/GB.
    pub ram_w_per_gb: f64,
    /// Directory for `emissions.csv` / `emissions.json`; `None` = write nothing.
    pub output_dir: Option<PathBuf>,
    /// Root of the powercap sysfs tree (RAPL).
    pub powercap_root: PathBuf,
    /// Use RAPL when readable.
    pub use_rapl: bool,
    /// Use NVML (feature `nvml`) when it starts.
    pub use_nvml: bool,
    /// Background sampling period in milliseconds (> 0).
    pub sample_interval_ms: u64,
}

impl Default for CarbonConfig {
    fn default() -> Self {
        Self {
            project_name: "forge".to_string(),
            experiment_id: String::new(),
            country_iso: "WLD".to_string(),
            region: None,
            carbon_intensity_g_per_kwh: None,
            pue: DEFAULT_PUE,
            tdp_w: None,
            ram_w_per_gb: crate::ram::DEFAULT_RAM_W_PER_GB,
            output_dir: None,
            powercap_root: PathBuf::from(crate::rapl::DEFAULT_POWERCAP_ROOT),
            use_rapl: true,
            use_nvml: true,
            sample_interval_ms: DEFAULT_SAMPLE_INTERVAL_MS,
        }
    }
}

impl CarbonConfig {
    /// The default configuration with the `FORGE_*` environment overrides applied.
    ///
    /// # Errors
    /// [`CarbonError::InvalidEnv`] for an unparsable value, and every error of [`CarbonConfig::validate`].
    pub fn from_env() -> Result<Self> {
        Self::default().with_env()
    }

    /// Applies `FORGE_PUE`, `FORGE_CARBON_INTENSITY`, `FORGE_COUNTRY` and `FORGE_CPU_TDP_W` on top of `self`.
    ///
    /// # Errors
    /// As [`CarbonConfig::from_env`].
    pub fn with_env(self) -> Result<Self> {
        self.with_env_from(|k| std::env::var(k).ok())
    }

    /// As [`CarbonConfig::with_env`] with an injected variable lookup (for tests).
    ///
    /// # Errors
    /// As [`CarbonConfig::from_env`].
    pub fn with_env_from(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        fn num(var: &'static str, raw: &str) -> Result<f64> {
            raw.trim()
                .parse::<f64>()
                .map_err(|_| CarbonError::InvalidEnv {
                    var,
                    value: raw.to_string(),
                })
        }
        if let Some(v) = get("FORGE_PUE").filter(|v| !v.trim().is_empty()) {
            self.pue = num("FORGE_PUE", &v)?;
        }
        if let Some(v) = get("FORGE_CARBON_INTENSITY").filter(|v| !v.trim().is_empty()) {
            self.carbon_intensity_g_per_kwh = Some(num("FORGE_CARBON_INTENSITY", &v)?);
        }
        if let Some(v) = get("FORGE_COUNTRY").filter(|v| !v.trim().is_empty()) {
            self.country_iso = v.trim().to_ascii_uppercase();
        }
        if let Some(v) = get("FORGE_CPU_TDP_W").filter(|v| !v.trim().is_empty()) {
            self.tdp_w = Some(num("FORGE_CPU_TDP_W", &v)?);
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks every field once, at the boundary.
    ///
    /// # Errors
    /// [`CarbonError::InvalidPue`] (not finite or < 1.0), [`CarbonError::InvalidIntensity`] (negative or
    /// not finite), [`CarbonError::UnknownCountry`], [`CarbonError::InvalidPower`] for a non-positive
    /// `tdp_w`, `ram_w_per_gb` < 0 or `sample_interval_ms` = 0.
    pub fn validate(&self) -> Result<()> {
        if !self.pue.is_finite() || self.pue < 1.0 {
            return Err(CarbonError::InvalidPue(self.pue));
        }
        if let Some(ci) = self.carbon_intensity_g_per_kwh {
            if !ci.is_finite() || ci < 0.0 {
                return Err(CarbonError::InvalidIntensity(ci));
            }
        }
        crate::intensity::country(&self.country_iso)?;
        if let Some(t) = self.tdp_w {
            if !t.is_finite() || t <= 0.0 {
                return Err(CarbonError::InvalidPower {
                    what: "tdp_w",
                    value: t,
                });
            }
        }
        if !self.ram_w_per_gb.is_finite() || self.ram_w_per_gb < 0.0 {
            return Err(CarbonError::InvalidPower {
                what: "ram_w_per_gb",
                value: self.ram_w_per_gb,
            });
        }
        if self.sample_interval_ms == 0 {
            return Err(CarbonError::InvalidPower {
                what: "sample_interval_ms",
                value: 0.0,
            });
        }
        Ok(())
    }

    /// The carbon intensity in use (g CO2-eq/kWh) and where it came from.
    ///
    /// # Errors
    /// [`CarbonError::UnknownCountry`] when no override is set and the country is not in the table.
    pub fn resolved_intensity(&self) -> Result<(f64, IntensitySource)> {
        match self.carbon_intensity_g_per_kwh {
            Some(ci) => Ok((ci, IntensitySource::Override)),
            None => Ok((
                crate::intensity::country(&self.country_iso)?.g_per_kwh,
                IntensitySource::CountryTable,
            )),
        }
    }

    /// Builder: sets the project name.
    pub fn project(mut self, name: impl Into<String>) -> Self {
        self.project_name = name.into();
        self
    }

    /// Builder: sets the output directory.
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = Some(dir.into());
        self
    }

    /// Builder: sets the country code.
    pub fn country(mut self, iso: impl Into<String>) -> Self {
        self.country_iso = iso.into();
        self
    }
}

/// Where the carbon intensity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntensitySource {
    /// The built-in per-country table.
    CountryTable,
    /// `carbon_intensity_g_per_kwh` / `FORGE_CARBON_INTENSITY`.
    Override,
}
