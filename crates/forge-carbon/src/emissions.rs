//! The result of one tracked run: energy per component, CO2, and how each figure was obtained.

use serde::{Deserialize, Serialize};

use crate::config::IntensitySource;

/// How a component's energy was obtained.
///
/// Serialises as `"rapl"`, `"nvml-energy"`, `"nvml-power"`, `"tdp-estimate"`, `"machine-load"`,
/// `"ram-model"`, `"dimm-model"`, `"constant"`, `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyMethod {
    /// Measured: Linux RAPL energy counters (/sys/class/powercap), whole package(s).
    Rapl,
    /// Measured: NVML total-energy counter (Volta and newer).
    NvmlEnergy,
    /// Measured: NVML instantaneous power sampled on a background thread and integrated.
    NvmlPower,
    /// Estimated: this process tree's CPU time x per-thread TDP (see [`crate::cpu`]).
    TdpEstimate,
    /// Estimated, whole machine: TDP x (0.1 + 0.9 x load^3) with the machine's CPU load sampled
    /// over the run (CodeCarbon 3.x's `cpu_load` mode, `tracking_mode="machine"`).
    MachineLoad,
    /// Estimated: resident memory of this process tree x W/GB (see [`crate::ram`]).
    RamModel,
    /// Estimated, whole machine: CodeCarbon 3.x's 5 W per estimated DIMM (see [`crate::ram`]).
    DimmModel,
    /// A constant power set by the user (`ram_power_w`, CodeCarbon's `force_ram_power`).
    Constant,
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
            EnergyMethod::MachineLoad => "machine-load",
            EnergyMethod::RamModel => "ram-model",
            EnergyMethod::DimmModel => "dimm-model",
            EnergyMethod::Constant => "constant",
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

/// What a run's figures cover.
///
/// | mode | CPU (no RAPL) | RAM (no RAPL DRAM) |
/// |---|---|---|
/// | `process` (Forge's default) | this process tree's CPU time x per-thread TDP | this process tree's RSS x 0.375 W/GB |
/// | `machine` (CodeCarbon's default) | whole-machine TDP x (0.1 + 0.9 load^3), machine load | 5 W per estimated DIMM (>= 2) of the machine's RAM |
///
/// RAPL counters always measure whole packages; NVML whole GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackingMode {
    /// This process and its descendants only (marginal attribution).
    #[default]
    Process,
    /// The whole machine.
    Machine,
}

impl TrackingMode {
    /// `"process"` or `"machine"` (CodeCarbon's `tracking_mode` values).
    pub fn as_str(self) -> &'static str {
        match self {
            TrackingMode::Process => "process",
            TrackingMode::Machine => "machine",
        }
    }
}

impl std::fmt::Display for TrackingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrackingMode {
    type Err = crate::CarbonError;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "process" => Ok(TrackingMode::Process),
            "machine" => Ok(TrackingMode::Machine),
            _ => Err(crate::CarbonError::InvalidSetting {
                key: "tracking_mode",
                value: s.to_string(),
                expected: "\"process\" or \"machine\"",
            }),
        }
    }
}

/// How one component's energy was obtained, what it covers and the power the model assumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentScope {
    /// `"cpu"`, `"ram"` or `"gpu"`.
    pub component: String,
    /// How the energy was obtained.
    pub method: EnergyMethod,
    /// What it covers: `"process tree"`, `"machine"`, `"package (RAPL)"`, `"GPUs (NVML)"`.
    pub scope: String,
    /// The power the model assumed, W, before PUE: the full-load power of the visible CPUs for
    /// the TDP models, the RAM power for the memory models; `None` for measurements.
    pub assumed_w: Option<f64>,
    /// Where the assumption came from (TDP source, DIMM count, ...).
    pub detail: String,
}

/// Energy and emissions of one tracked interval.
///
/// Units: seconds, kWh, kg CO2-eq, W, L, g CO2-eq/kWh. As in CodeCarbon, PUE is applied to each
/// component: `cpu_energy_kwh` = E_cpu x `pue` (likewise GPU, RAM and the `*_power_w` figures), so
/// `energy_kwh` = cpu + gpu + ram exactly; `emissions_kg` = `energy_kwh` x
/// `carbon_intensity_g_per_kwh` / 1000; `water_consumed_l` = `energy_kwh` x `wue` when a WUE is
/// set, `None` otherwise (not estimated).
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
    /// CPU energy in kWh, PUE included.
    pub cpu_energy_kwh: f64,
    /// GPU energy in kWh (all visible GPUs), PUE included.
    pub gpu_energy_kwh: f64,
    /// RAM energy in kWh, PUE included.
    pub ram_energy_kwh: f64,
    /// Facility energy in kWh: cpu + gpu + ram (each already x PUE).
    pub energy_kwh: f64,
    /// Emissions in kg CO2-eq.
    pub emissions_kg: f64,
    /// Emissions rate in kg CO2-eq per second (CodeCarbon's `emissions_rate`).
    pub emissions_rate_kg_per_s: f64,
    /// Mean CPU power over the interval, W, PUE included.
    pub cpu_power_w: f64,
    /// Mean GPU power over the interval, W, PUE included.
    pub gpu_power_w: f64,
    /// Mean RAM power over the interval, W, PUE included.
    pub ram_power_w: f64,
    /// How the CPU energy was obtained.
    pub cpu_method: EnergyMethod,
    /// How the GPU energy was obtained; `None` when no GPU was tracked.
    pub gpu_method: Option<EnergyMethod>,
    /// How the RAM energy was obtained.
    pub ram_method: EnergyMethod,
    /// This process tree's CPU time (user + system, all threads, live and waited-for
    /// descendants) over the interval, seconds.
    pub process_cpu_s: f64,
    /// The process tree's share of the machine's CPU capacity: cpu_time / (wall x logical CPUs), in [0, 1].
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
    /// Region (US state, province, ...), or the cloud region's location.
    pub region: Option<String>,
    /// Cloud provider (CodeCarbon's `cloud_provider`), if configured.
    #[serde(default)]
    pub cloud_provider: Option<String>,
    /// Cloud region (CodeCarbon's `cloud_region`), if configured.
    #[serde(default)]
    pub cloud_region: Option<String>,
    /// Which table entry gave the carbon intensity.
    #[serde(default)]
    pub intensity_detail: String,
    /// Water usage effectiveness applied, L/kWh; `None` when not set.
    #[serde(default)]
    pub wue_l_per_kwh: Option<f64>,
    /// Water consumed, L (`energy_kwh` x WUE); `None` when no WUE is set (not estimated).
    #[serde(default)]
    pub water_consumed_l: Option<f64>,
    /// Mean machine CPU utilisation over the interval, % (`/proc/stat`), if readable.
    #[serde(default)]
    pub cpu_utilization_percent: Option<f64>,
    /// Mean GPU utilisation, %: 0 without GPUs; `None` when GPUs are tracked (not read yet).
    #[serde(default)]
    pub gpu_utilization_percent: Option<f64>,
    /// Mean machine RAM utilisation, % (used / total), if readable.
    #[serde(default)]
    pub ram_utilization_percent: Option<f64>,
    /// Mean machine RAM in use, GiB, if readable.
    #[serde(default)]
    pub ram_used_gb: Option<f64>,
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
    /// Mean resident memory of this process tree over the interval, GiB.
    pub ram_process_gb: f64,
    /// What the figures cover (see [`TrackingMode`] and [`Emissions::components`]).
    pub tracking_mode: TrackingMode,
    /// Per component: method, scope and assumed power.
    #[serde(default)]
    pub components: Vec<ComponentScope>,
    /// Operating system (`Linux-<release>-<arch>`).
    pub os: String,
    /// forge-carbon version that produced this record.
    pub forge_carbon_version: String,
    /// Fallbacks and other notes (e.g. "NVML init failed: ...").
    pub warnings: Vec<String>,
}

impl Emissions {
    /// Total energy at the hardware (before PUE), kWh: `energy_kwh / pue`.
    pub fn it_energy_kwh(&self) -> f64 {
        if self.pue > 0.0 {
            self.energy_kwh / self.pue
        } else {
            self.energy_kwh
        }
    }

    /// Serialises to pretty JSON.
    ///
    /// # Errors
    /// [`crate::CarbonError::Json`] (never in practice: all fields are serialisable).
    pub fn to_json(&self) -> crate::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}
