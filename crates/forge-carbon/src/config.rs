//! Tracker configuration: scope, location, PUE/WUE, hardware overrides and output, with
//! CodeCarbon's settings (`.codecarbon.config`, `CODECARBON_*`) read as CodeCarbon users have them.
//!
//! | field | default | meaning | CodeCarbon key |
//! |---|---|---|---|
//! | `project_name` | `"forge"` | CSV `project_name` | `project_name` |
//! | `experiment_id` | `""` | CSV `experiment_id` | `experiment_id` |
//! | `tracking_mode` | `process` | what is measured ([`TrackingMode`]) | `tracking_mode` |
//! | `country_iso` | `"WLD"` | ISO 3166-1 alpha-3 ([`crate::intensity`]); unknown -> world average + warning | `country_iso_code` |
//! | `region` | `None` | US state, Canadian/Chinese province, Nordic zone: regional intensity | `region` |
//! | `cloud_provider` / `cloud_region` | `None` | cloud-region intensity (GCP in CodeCarbon's table) | same |
//! | `carbon_intensity_g_per_kwh` | `None` | overrides the tables | `force_carbon_intensity_g_co2e_kwh` |
//! | `pue` | `1.0` ([`DEFAULT_PUE`]) | applied to every component | `pue` |
//! | `wue` | `None` | L/kWh; `None` = water not estimated (empty CSV cells) | `wue` |
//! | `tdp_w` | `None` | full-load power of all logical CPUs; overrides the TDP tables | `force_cpu_power` |
//! | `ram_w_per_gb` | `0.375` ([`crate::ram::DEFAULT_RAM_W_PER_GB`]) | process-mode RAM model | — |
//! | `ram_power_w` | `None` | constant RAM power, replaces both RAM models | `force_ram_power` |
//! | `output_dir` | `None` | where `stop()` appends the CSV and `emissions.jsonl`; `None` = no files | `output_dir` (`save_to_file = false` clears it) |
//! | `output_file` | `"emissions.csv"` | CSV file name | `output_file` |
//! | `powercap_root` | `/sys/class/powercap` | RAPL sysfs root (tests point it at a fake tree) | — |
//! | `use_rapl` / `use_nvml` | `true` | allow the measured sources when present | — |
//! | `sample_interval_ms` | `500` | background sampling period (machine load, RAPL, NVML) | `measure_power_secs` x 1000 |
//!
//! # Precedence ([`CarbonConfig::from_env`]), lowest first
//!
//! 1. the defaults above;
//! 2. `~/.codecarbon.config`, section `[codecarbon]` (CodeCarbon's global file);
//! 3. `./.codecarbon.config` (CodeCarbon's local file, current directory);
//! 4. `CODECARBON_<KEY>` environment variables (e.g. `CODECARBON_PUE`, `CODECARBON_TRACKING_MODE`);
//! 5. Forge's own `FORGE_PUE`, `FORGE_CARBON_INTENSITY` (g/kWh), `FORGE_COUNTRY`,
//!    `FORGE_REGION`, `FORGE_CPU_TDP_W`, `FORGE_TRACKING_MODE`, `FORGE_WUE`;
//! 6. values set in code after `from_env()` (the builders, or struct fields).
//!
//! Layers 2-4 are CodeCarbon's own order, so a CodeCarbon user's settings mean the same in Forge;
//! Forge's variables sit above them because they are the more specific ones. CodeCarbon keys that
//! Forge does not use (API keys, `log_level`, ...) are ignored with a debug log; a key that Forge
//! uses but cannot parse is an error naming the file or variable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::emissions::TrackingMode;
use crate::error::{CarbonError, Result};
pub use crate::intensity::IntensitySource;

/// Default power usage effectiveness: 1.0, CodeCarbon's default (energy counted at the machine).
///
/// For a typical data centre set the Uptime Institute Global Data Center Survey 2023 average, 1.58
/// (carbontracker, Anthony et al. 2020, uses the 2019 survey's 1.58 as well).
pub const DEFAULT_PUE: f64 = 1.0;

/// Default sampling period of the background sampler, in milliseconds.
pub const DEFAULT_SAMPLE_INTERVAL_MS: u64 = 500;

/// CodeCarbon's configuration file name.
pub const CODECARBON_CONFIG_FILE: &str = ".codecarbon.config";

/// Forge's own carbon-setting variables (layer 5 of the precedence above).
pub const FORGE_ENV_VARS: [&str; 7] = [
    "FORGE_COUNTRY",
    "FORGE_REGION",
    "FORGE_CARBON_INTENSITY",
    "FORGE_PUE",
    "FORGE_WUE",
    "FORGE_CPU_TDP_W",
    "FORGE_TRACKING_MODE",
];

/// The carbon settings this process's environment holds (`CODECARBON_*` and
/// [`FORGE_ENV_VARS`]), sorted by name: what a scheduler exports to every task of a sweep so
/// that all of them measure alike.
pub fn settings_env() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CODECARBON_") || FORGE_ENV_VARS.contains(&k.as_str()))
        .collect();
    v.sort();
    v
}

/// Configuration of a [`crate::CarbonTracker`]. See the module docs for the defaults table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CarbonConfig {
    /// Project name (CodeCarbon's `project_name`).
    pub project_name: String,
    /// Experiment identifier (CodeCarbon's `experiment_id`).
    pub experiment_id: String,
    /// What the CPU and RAM figures cover.
    pub tracking_mode: TrackingMode,
    /// ISO 3166-1 alpha-3 country code, or `"WLD"` for the world average.
    pub country_iso: String,
    /// Region within the country (US state, Canadian/Chinese province, Nordic bidding zone).
    pub region: Option<String>,
    /// Cloud provider (`"gcp"`, ...).
    pub cloud_provider: Option<String>,
    /// Cloud region (`"europe-west1"`, ...).
    pub cloud_region: Option<String>,
    /// Carbon intensity override in g CO2-eq per kWh; `None` = the tables.
    pub carbon_intensity_g_per_kwh: Option<f64>,
    /// Power usage effectiveness (>= 1.0), applied to every component.
    pub pue: f64,
    /// Water usage effectiveness, L/kWh (>= 0); `None` = water not estimated.
    pub wue: Option<f64>,
    /// CPU full-load power in watts for all logical CPUs visible to the OS; `None` = TDP tables.
    pub tdp_w: Option<f64>,
    /// RAM power per GB of resident memory in process mode, W/GB.
    pub ram_w_per_gb: f64,
    /// Constant RAM power, W (CodeCarbon's `force_ram_power`); `None` = the mode's model.
    pub ram_power_w: Option<f64>,
    /// Directory for the CSV and `emissions.jsonl`; `None` = write nothing.
    pub output_dir: Option<PathBuf>,
    /// CSV file name inside `output_dir`.
    pub output_file: String,
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
            tracking_mode: TrackingMode::Process,
            country_iso: "WLD".to_string(),
            region: None,
            cloud_provider: None,
            cloud_region: None,
            carbon_intensity_g_per_kwh: None,
            pue: DEFAULT_PUE,
            wue: None,
            tdp_w: None,
            ram_w_per_gb: crate::ram::DEFAULT_RAM_W_PER_GB,
            ram_power_w: None,
            output_dir: None,
            output_file: crate::output::CSV_FILE.to_string(),
            powercap_root: PathBuf::from(crate::rapl::DEFAULT_POWERCAP_ROOT),
            use_rapl: true,
            use_nvml: true,
            sample_interval_ms: DEFAULT_SAMPLE_INTERVAL_MS,
        }
    }
}

fn num(var: &str, raw: &str) -> Result<f64> {
    raw.trim()
        .parse::<f64>()
        .map_err(|_| CarbonError::InvalidEnv {
            var: var.to_string(),
            value: raw.to_string(),
        })
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Reads the `[codecarbon]` section of a CodeCarbon configuration file (INI, as Python's
/// `configparser`: `key = value` or `key: value`, keys case-insensitive, `#`/`;` comments).
/// A missing or unreadable file gives no entries, as `configparser.read` does.
pub fn read_codecarbon_config(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut in_section = false;
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            in_section = name.trim() == "codecarbon";
            continue;
        }
        if !in_section {
            continue;
        }
        let split = t.find(['=', ':']);
        if let Some(i) = split {
            let key = t[..i].trim().to_lowercase();
            let value = t[i + 1..].trim().to_string();
            out.retain(|(k, _)| k != &key);
            out.push((key, value));
        }
    }
    out
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

impl CarbonConfig {
    /// The defaults with every settings layer applied (see the module docs for the order).
    ///
    /// # Errors
    /// [`CarbonError::InvalidEnv`] / [`CarbonError::InvalidSetting`] for an unparsable value, and
    /// every error of [`CarbonConfig::validate`].
    pub fn from_env() -> Result<Self> {
        Self::default().with_env()
    }

    /// Applies CodeCarbon's files, `CODECARBON_*` and `FORGE_*` on top of `self`.
    ///
    /// # Errors
    /// As [`CarbonConfig::from_env`].
    pub fn with_env(self) -> Result<Self> {
        let global = home_dir().map(|h| h.join(CODECARBON_CONFIG_FILE));
        let local = std::env::current_dir()
            .ok()
            .map(|d| d.join(CODECARBON_CONFIG_FILE));
        self.with_settings(global.as_deref(), local.as_deref(), |k| {
            std::env::var(k).ok()
        })
    }

    /// As [`CarbonConfig::with_env`] with explicit file paths and an injected variable lookup.
    ///
    /// # Errors
    /// As [`CarbonConfig::from_env`].
    pub fn with_settings(
        mut self,
        global_file: Option<&Path>,
        local_file: Option<&Path>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        for file in [global_file, local_file].into_iter().flatten() {
            for (key, value) in read_codecarbon_config(file) {
                let origin = format!("{}: {key}", file.display());
                self.apply_codecarbon(&key, &value, &origin)?;
            }
        }
        for key in CODECARBON_KEYS {
            let var = format!("CODECARBON_{}", key.to_uppercase());
            let v = get(&var).or_else(|| get(&var.to_lowercase()));
            if let Some(v) = v {
                self.apply_codecarbon(key, &v, &var)?;
            }
        }
        self.apply_forge_env(get)?;
        self.validate()?;
        Ok(self)
    }

    /// As [`CarbonConfig::with_env`] with an injected lookup and no configuration files.
    ///
    /// # Errors
    /// As [`CarbonConfig::from_env`].
    pub fn with_env_from(self, get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        self.with_settings(None, None, get)
    }

    fn apply_codecarbon(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let v = value.trim();
        if v.is_empty() {
            return Ok(());
        }
        match key {
            "project_name" => self.project_name = v.to_string(),
            "experiment_id" => self.experiment_id = v.to_string(),
            "tracking_mode" => self.tracking_mode = v.parse()?,
            "country_iso_code" => self.country_iso = v.to_ascii_uppercase(),
            "region" => self.region = Some(v.to_string()),
            "cloud_provider" => self.cloud_provider = Some(v.to_string()),
            "cloud_region" => self.cloud_region = Some(v.to_string()),
            "force_carbon_intensity_g_co2e_kwh" => {
                self.carbon_intensity_g_per_kwh = Some(num(origin, v)?)
            }
            "pue" => self.pue = num(origin, v)?,
            "wue" => self.wue = Some(num(origin, v)?),
            "force_cpu_power" => self.tdp_w = Some(num(origin, v)?),
            "force_ram_power" => self.ram_power_w = Some(num(origin, v)?),
            "output_dir" => self.output_dir = Some(PathBuf::from(v)),
            "output_file" => self.output_file = v.to_string(),
            "save_to_file" => {
                if matches!(
                    v.to_ascii_lowercase().as_str(),
                    "false" | "0" | "no" | "off"
                ) {
                    self.output_dir = None;
                }
            }
            "measure_power_secs" => {
                let s = num(origin, v)?;
                if !s.is_finite() || s <= 0.0 {
                    return Err(CarbonError::InvalidPower {
                        what: "measure_power_secs",
                        value: s,
                    });
                }
                self.sample_interval_ms = ((s * 1000.0).round() as u64).max(1);
            }
            other => tracing::debug!(key = other, origin, "CodeCarbon setting not used by Forge"),
        }
        tracing::debug!(key, origin, "setting applied");
        Ok(())
    }

    fn apply_forge_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(v) = non_empty(get("FORGE_PUE")) {
            self.pue = num("FORGE_PUE", &v)?;
        }
        if let Some(v) = non_empty(get("FORGE_CARBON_INTENSITY")) {
            self.carbon_intensity_g_per_kwh = Some(num("FORGE_CARBON_INTENSITY", &v)?);
        }
        if let Some(v) = non_empty(get("FORGE_COUNTRY")) {
            self.country_iso = v.to_ascii_uppercase();
        }
        if let Some(v) = non_empty(get("FORGE_REGION")) {
            self.region = Some(v);
        }
        if let Some(v) = non_empty(get("FORGE_CPU_TDP_W")) {
            self.tdp_w = Some(num("FORGE_CPU_TDP_W", &v)?);
        }
        if let Some(v) = non_empty(get("FORGE_TRACKING_MODE")) {
            self.tracking_mode = v.parse()?;
        }
        if let Some(v) = non_empty(get("FORGE_WUE")) {
            self.wue = Some(num("FORGE_WUE", &v)?);
        }
        Ok(())
    }

    /// Checks every field once, at the boundary. An unknown country is not an error (it falls
    /// back to the world average with a warning when the tracker starts).
    ///
    /// # Errors
    /// [`CarbonError::InvalidPue`] (not finite or < 1.0), [`CarbonError::InvalidIntensity`] (negative or
    /// not finite), [`CarbonError::InvalidPower`] for a non-positive `tdp_w`, a negative
    /// `ram_w_per_gb`, `ram_power_w` or `wue`, or `sample_interval_ms` = 0.
    pub fn validate(&self) -> Result<()> {
        if !self.pue.is_finite() || self.pue < 1.0 {
            return Err(CarbonError::InvalidPue(self.pue));
        }
        if let Some(ci) = self.carbon_intensity_g_per_kwh {
            if !ci.is_finite() || ci < 0.0 {
                return Err(CarbonError::InvalidIntensity(ci));
            }
        }
        if let Some(t) = self.tdp_w {
            if !t.is_finite() || t <= 0.0 {
                return Err(CarbonError::InvalidPower {
                    what: "tdp_w",
                    value: t,
                });
            }
        }
        for (what, v) in [
            ("ram_w_per_gb", Some(self.ram_w_per_gb)),
            ("ram_power_w", self.ram_power_w),
            ("wue", self.wue),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(CarbonError::InvalidPower { what, value: v });
                }
            }
        }
        if self.sample_interval_ms == 0 {
            return Err(CarbonError::InvalidPower {
                what: "sample_interval_ms",
                value: 0.0,
            });
        }
        if self.output_file.trim().is_empty() {
            return Err(CarbonError::InvalidSetting {
                key: "output_file",
                value: self.output_file.clone(),
                expected: "a file name",
            });
        }
        Ok(())
    }

    /// The carbon intensity in use and the location it stands for: the override when set,
    /// else [`crate::intensity::resolve`] (cloud region, region, country, world average).
    pub fn resolved_intensity(&self) -> crate::intensity::Intensity {
        let mut r = crate::intensity::resolve(
            &self.country_iso,
            self.region.as_deref(),
            self.cloud_provider
                .as_deref()
                .zip(self.cloud_region.as_deref()),
        );
        if let Some(ci) = self.carbon_intensity_g_per_kwh {
            r.g_per_kwh = ci;
            r.source = IntensitySource::Override;
            r.detail = "override (carbon_intensity_g_per_kwh)".into();
        }
        r
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

    /// Builder: sets the tracking mode.
    pub fn tracking_mode(mut self, mode: TrackingMode) -> Self {
        self.tracking_mode = mode;
        self
    }
}

/// The CodeCarbon settings Forge reads (from files and `CODECARBON_<KEY>`).
pub const CODECARBON_KEYS: [&str; 16] = [
    "project_name",
    "experiment_id",
    "tracking_mode",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "force_carbon_intensity_g_co2e_kwh",
    "pue",
    "wue",
    "force_cpu_power",
    "force_ram_power",
    "output_dir",
    "output_file",
    "save_to_file",
    "measure_power_secs",
];
