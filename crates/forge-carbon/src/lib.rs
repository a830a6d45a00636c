//! forge-carbon: energy and CO2 tracking for Forge — measured where possible, estimated honestly
//! otherwise, and always saying which.
//!
//! - CPU: Linux RAPL counters ([`rapl`]) when readable, else this process's CPU time x per-thread
//!   TDP ([`cpu`]), attributed to this process only.
//! - RAM: RAPL DRAM zones, else resident memory x 0.375 W/GB ([`ram`]).
//! - GPU: NVML energy counter or sampled power, feature `nvml` ([`gpu`]).
//! - PUE and per-country carbon intensity ([`intensity`]); CodeCarbon-compatible `emissions.csv`
//!   and JSON ([`output`]); comparisons with human-scale equivalents ([`compare`]); carbontracker's
//!   whole-run prediction from the first epochs ([`predict`]).
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
pub use cpu::{CpuInfo, CpuPowerModel, TdpSource};
pub use emissions::{Emissions, EnergyMethod};
pub use error::{CarbonError, Result};
pub use gpu::{GpuBackend, GpuMeter, PowerIntegrator};
pub use output::{append_csv, append_json, read_json, write_json, CODECARBON_COLUMNS};
pub use predict::{EnergyPredictor, EpochRecord, Prediction};
pub use process::{LinuxProbe, ProcessProbe};
pub use rapl::{RaplAccumulator, RaplReader};
pub use tracker::{track, CarbonTracker, TrackingGuard};
