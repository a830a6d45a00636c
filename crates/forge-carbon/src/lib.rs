//! forge-carbon: energy and CO2 tracking for Forge — measured where possible, estimated honestly
//! otherwise, and always saying which.
//!
//! - Scope stated in every record ([`TrackingMode`]): `process` (default: this process tree's CPU
//!   time and resident memory) or `machine` (CodeCarbon 3.x's default: the whole machine).
//! - CPU: Linux RAPL counters ([`rapl`]) when readable, else a TDP estimate ([`cpu`]) with the TDP
//!   from CodeCarbon's CPU table (fuzzy name match, as CodeCarbon) or a CPUID fallback.
//! - RAM: RAPL DRAM zones, else resident memory x 0.375 W/GB (process) or 5 W per estimated DIMM
//!   (machine, as CodeCarbon 3.x) ([`ram`]).
//! - GPU: NVML energy counter or sampled power, feature `nvml` ([`gpu`]).
//! - PUE per component, WUE, carbon intensity by country, region and cloud region from
//!   CodeCarbon's current data ([`intensity`]); CodeCarbon 3.3-compatible `emissions.csv` and a
//!   JSON Lines record, appended in O(1) with crash recovery ([`output`]); CodeCarbon's
//!   `.codecarbon.config` and `CODECARBON_*` settings ([`config`]); comparisons with human-scale
//!   equivalents ([`compare`]); carbontracker's whole-run prediction from the first epochs
//!   ([`predict`]).
//!
//! ```
//! use forge_carbon::{track, CarbonConfig, EnergyMethod};
//!
//! let config = CarbonConfig { country_iso: "FRA".into(), ..CarbonConfig::default() };
//! let (sum, e) = track(&config, || (0..2_000_000u64).map(|i| i ^ (i >> 3)).sum::<u64>())?;
//! assert!(sum > 0);
//! assert!(e.duration_s > 0.0 && e.energy_kwh >= 0.0);
//! assert_eq!(e.country_iso, "FRA");
//! # if e.cpu_method == EnergyMethod::TdpEstimate { assert!(e.cpu_energy_kwh > 0.0); }
//! # Ok::<(), forge_carbon::CarbonError>(())
//! ```
#![deny(missing_docs)]

pub mod compare;
pub mod config;
pub mod cpu;
pub mod emissions;
pub mod error;
pub mod gpu;
pub mod intensity;
pub mod output;
pub mod predict;
pub mod process;
pub mod ram;
pub mod rapl;
pub mod tracker;
pub mod util;

pub use compare::{compare_emissions, equivalents, Comparison, Equivalents, RunComparison};
pub use config::{CarbonConfig, IntensitySource, DEFAULT_PUE};
pub use cpu::{CpuInfo, CpuMatch, CpuPowerModel, TdpSource};
pub use emissions::{ComponentScope, Emissions, EnergyMethod, TrackingMode};
pub use error::{CarbonError, Result};
pub use gpu::{GpuBackend, GpuMeter, PowerIntegrator};
pub use intensity::Intensity;
pub use output::{
    append_csv, append_json, append_record, read_csv, read_json, write_json, CODECARBON_COLUMNS,
};
pub use predict::{EnergyPredictor, EpochRecord, Prediction};
pub use process::{LinuxProbe, MachineCpuTimes, ProcessProbe, SystemProbe};
pub use rapl::{RaplAccumulator, RaplReader};
pub use tracker::{track, CarbonTracker, TrackingGuard};
