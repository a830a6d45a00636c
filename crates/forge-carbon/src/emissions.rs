//! The result of one tracked run: energy per component, CO2, and how each figure was obtained.

use serde::{Deserialize, Serialize};

use crate::config::IntensitySource;

/// How a component's energy was obtained.
///
/// Serialises as `"rapl"`, `"nvml-energy"`, `"nvml-power"`, `"tdp-estimate"`, `"ram-model"`, `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyMethod {
    /// Measured: Linux RAPL energy counters (/sys/class/powercap), whole package(s).
    Rapl,
    /// Measured: NVML total-energy counter (Volta and newer).
    NvmlEnergy,
    /// Measured: NVML instantaneous power sampled on a background thread and integrated.
    NvmlPower,
    /// Estimated: this process's CPU time x per-thread TDP (see [`crate::cpu`]).
    TdpEstimate,
    /// Estimated: resident memory x W/GB (see [`crate::ram`]).
    RamModel,
    /// Not measured (no device, or the source failed).
    None,
}

impl EnergyMethod {
    /// The serialised name (`"rapl"`, `"nvml-energy"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::NvmlEnergy => "nvml-energy",
            EnergyMethod::NvmlPower => "nvml-power",
            EnergyMethod::TdpEstimate => "tdp-estimate",
            EnergyMethod::RamModel => "ram-model",
            EnergyMethod::None => "none",
        }
    }

    /// True for the measured methods (RAPL, NVML), false for the estimates.
    pub fn is_measured(self) -> bool {
        matches!(
            self,
            EnergyMethod::Rapl | EnergyMethod::NvmlEnergy | EnergyMethod::NvmlPower
        )
    }
}

impl std::fmt::Display for EnergyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Energy and emissions of one tracked interval.
///
/// Units: seconds, kWh, kg CO2-eq, W, g CO2-eq/kWh. Component energies (`cpu_energy_kwh`,
/// `gpu_energy_kwh`, `ram_energy_kwh`) are at the hardware; `energy_kwh` = (cpu + gpu + ram) x `pue`
/// is the facility energy; `emissions_kg` = `energy_kwh` x `carbon_intensity_g_per_kwh` / 1000.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emissions {
    /// Start time, UTC, `YYYY-MM-DDTHH:MM:SS` (CodeCarbon's format).
    pub timestamp: String,
    /// Project name.
    pub project_name: String,
    /// Unique id of this run (UUID v4 text).
    pub run_id: String,
    /// Experiment id.
    pub experiment_id: String,
    /// Wall-clock duration in seconds.
    pub duration_s: f64,
    /// CPU energy in kWh.
    pub cpu_energy_kwh: f64,
    /// GPU energy in kWh (all visible GPUs).
    pub gpu_energy_kwh: f64,
    /// RAM energy in kWh.
    pub ram_energy_kwh: f64,
    /// Facility energy in kWh: (cpu + gpu + ram) x PUE.
    pub energy_kwh: f64,
    /// Emissions in kg CO2-eq.
    pub emissions_kg: f64,
    /// Emissions rate in kg CO2-eq per second (CodeCarbon's `emissions_rate`).
    pub emissions_rate_kg_per_s: f64,
    /// Mean CPU power over the interval, W.
    pub cpu_power_w: f64,
    /// Mean GPU power over the interval, W.
    pub gpu_power_w: f64,
    /// Mean RAM power over the interval, W.
    pub ram_power_w: f64,
    /// How the CPU energy was obtained.
    pub cpu_method: EnergyMethod,
    /// How the GPU energy was obtained; `None` when no GPU was tracked.
    pub gpu_method: Option<EnergyMethod>,
    /// How the RAM energy was obtained.
    pub ram_method: EnergyMethod,
    /// This process's CPU time (user + system, all threads) over the interval, seconds.
    pub process_cpu_s: f64,
    /// This process's share of the machine's CPU capacity: cpu_time / (wall x logical CPUs), in [0, 1].
    pub process_cpu_share: f64,
    /// Per-logical-CPU full-load power used by the TDP estimate, W (absent for RAPL).
    pub cpu_w_per_thread: Option<f64>,
    /// Where that per-thread power came from (`"table: ..."`, `"microarchitecture: ..."`, `"config"`, `"default"`).
    pub tdp_source: Option<String>,
    /// Power usage effectiveness applied.
    pub pue: f64,
    /// Carbon intensity applied, g CO2-eq/kWh.
    pub carbon_intensity_g_per_kwh: f64,
    /// Where the carbon intensity came from.
    pub intensity_source: IntensitySource,
    /// ISO 3166-1 alpha-3 country code (`WLD` = world).
    pub country_iso: String,
    /// Country name.
    pub country_name: String,
    /// Region (free text), if configured.
    pub region: Option<String>,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Number of logical CPUs visible to the OS.
    pub cpu_count: usize,
    /// GPU model(s), CodeCarbon style (`"2 x NVIDIA H100 ..."`), if any.
    pub gpu_model: Option<String>,
    /// Number of GPUs tracked.
    pub gpu_count: usize,
    /// Total RAM of the machine, GiB (CodeCarbon's `ram_total_size`).
    pub ram_total_gb: f64,
    /// Mean resident memory of this process over the interval, GiB.
    pub ram_process_gb: f64,
    /// `"process"` when the CPU figure is attributed to this process, `"machine"` for RAPL.
    pub tracking_mode: String,
    /// Operating system (`Linux-<release>-<arch>`).
    pub os: String,
    /// forge-carbon version that produced this record.
    pub forge_carbon_version: String,
    /// Fallbacks and other notes (e.g. "NVML init failed: ...").
    pub warnings: Vec<String>,
}

impl Emissions {
    /// Total energy at the hardware (before PUE), kWh.
    pub fn it_energy_kwh(&self) -> f64 {
        self.cpu_energy_kwh + self.gpu_energy_kwh + self.ram_energy_kwh
    }

    /// Serialises to pretty JSON.
    ///
    /// # Errors
    /// [`crate::CarbonError::Json`] (never in practice: all fields are serialisable).
    pub fn to_json(&self) -> crate::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}
