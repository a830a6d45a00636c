//! GPU energy: NVML's total-energy counter where the GPU has one (Volta and newer), otherwise
//! NVML power sampled on the tracker's background thread and integrated with the trapezoidal rule.
//!
//! The logic is written against the [`GpuBackend`] trait so that it is testable without a GPU;
//! `nvml::NvmlBackend` (feature `nvml`) is the real backend. Every visible GPU is tracked.
//!
//! ```text
//! counter:  E_i = counter_i(stop) - counter_i(start)                      [mJ]
//! sampling: E_i = sum_k (t_k - t_{k-1}) x (P_i(t_k) + P_i(t_{k-1})) / 2   [W x s]
//! ```
//! (NVML API reference: `nvmlDeviceGetTotalEnergyConsumption`, `nvmlDeviceGetPowerUsage`.)

use crate::emissions::EnergyMethod;

/// A source of per-GPU energy/power readings.
pub trait GpuBackend: Send {
    /// Number of GPUs.
    fn device_count(&self) -> usize;
    /// Model name of GPU `i`.
    fn name(&self, i: usize) -> String;
    /// Total energy consumed by GPU `i` since the driver loaded, mJ; `None` if unsupported.
    fn total_energy_mj(&self, i: usize) -> Option<u64>;
    /// Current power draw of GPU `i`, mW; `None` if unsupported.
    fn power_mw(&self, i: usize) -> Option<u32>;
}

/// Trapezoidal integration of power samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerIntegrator {
    last: Option<(f64, f64)>,
    energy_j: f64,
}

impl PowerIntegrator {
    /// Adds a sample: `power_w` watts at time `t_s` seconds. Samples with `t_s` not after the
    /// previous one replace its power without adding energy.
    pub fn push(&mut self, t_s: f64, power_w: f64) {
        if let Some((t0, p0)) = self.last {
            if t_s > t0 {
                self.energy_j += (t_s - t0) * (power_w + p0) / 2.0;
            }
        }
        self.last = Some((t_s, power_w));
    }

    /// Energy integrated so far, J.
    pub fn energy_j(&self) -> f64 {
        self.energy_j
    }
}

#[derive(Debug, Clone)]
enum DeviceTrack {
    Counter { start_mj: u64, last_mj: u64 },
    Sampled(PowerIntegrator),
}

/// Energy accounting for all GPUs of one backend over one interval.
#[derive(Debug, Clone)]
pub struct GpuMeter {
    devices: Vec<usize>,
    tracks: Vec<DeviceTrack>,
    names: Vec<String>,
}

impl GpuMeter {
    /// Starts metering at time `t_s`: devices with an energy counter use it, the others are sampled.
    /// Devices with neither are skipped.
    pub fn start(backend: &dyn GpuBackend, t_s: f64) -> Self {
        let mut devices = Vec::new();
        let mut tracks = Vec::new();
        let mut names = Vec::new();
        for i in 0..backend.device_count() {
            let track = if let Some(mj) = backend.total_energy_mj(i) {
                DeviceTrack::Counter {
                    start_mj: mj,
                    last_mj: mj,
                }
            } else if let Some(mw) = backend.power_mw(i) {
                let mut pi = PowerIntegrator::default();
                pi.push(t_s, f64::from(mw) / 1000.0);
                DeviceTrack::Sampled(pi)
            } else {
                tracing::warn!(
                    gpu = i,
                    "GPU has neither an energy counter nor a power reading; skipped"
                );
                continue;
            };
            devices.push(i);
            tracks.push(track);
            names.push(backend.name(i));
        }
        Self {
            devices,
            tracks,
            names,
        }
    }

    /// True when some device needs background power sampling.
    pub fn needs_sampling(&self) -> bool {
        self.tracks
            .iter()
            .any(|t| matches!(t, DeviceTrack::Sampled(_)))
    }

    /// Number of GPUs metered.
    pub fn device_count(&self) -> usize {
        self.tracks.len()
    }

    /// Takes one reading of every metered device at time `t_s` (call periodically, and once at stop).
    pub fn sample(&mut self, backend: &dyn GpuBackend, t_s: f64) {
        for (i, track) in self.devices.iter().zip(self.tracks.iter_mut()) {
            match track {
                DeviceTrack::Counter { last_mj, .. } => {
                    if let Some(mj) = backend.total_energy_mj(*i) {
                        *last_mj = mj.max(*last_mj);
                    }
                }
                DeviceTrack::Sampled(pi) => {
                    if let Some(mw) = backend.power_mw(*i) {
                        pi.push(t_s, f64::from(mw) / 1000.0);
                    }
                }
            }
        }
    }

    /// Total energy of all devices, J.
    pub fn energy_j(&self) -> f64 {
        self.tracks
            .iter()
            .map(|t| match t {
                DeviceTrack::Counter { start_mj, last_mj } => (last_mj - start_mj) as f64 * 1e-3,
                DeviceTrack::Sampled(pi) => pi.energy_j(),
            })
            .sum()
    }

    /// The method recorded for the GPU component: `nvml-energy` if every device had a counter,
    /// `nvml-power` if any was sampled, `None` when no device was metered.
    pub fn method(&self) -> Option<EnergyMethod> {
        if self.tracks.is_empty() {
            None
        } else if self.needs_sampling() {
            Some(EnergyMethod::NvmlPower)
        } else {
            Some(EnergyMethod::NvmlEnergy)
        }
    }

    /// CodeCarbon-style model string: `"2 x NVIDIA H100 80GB HBM3"`, or joined distinct models.
    pub fn model_string(&self) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let mut groups: Vec<(String, usize)> = Vec::new();
        for n in &self.names {
            match groups.iter_mut().find(|(g, _)| g == n) {
                Some((_, c)) => *c += 1,
                None => groups.push((n.clone(), 1)),
            }
        }
        Some(
            groups
                .iter()
                .map(|(n, c)| format!("{c} x {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// The NVML backend (feature `nvml`).
#[cfg(feature = "nvml")]
pub mod nvml {
    use super::GpuBackend;

    /// GPUs seen through NVML (nvml-wrapper). Devices are looked up by index on every call.
    pub struct NvmlBackend {
        nvml: nvml_wrapper::Nvml,
        count: usize,
    }

    impl std::fmt::Debug for NvmlBackend {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("NvmlBackend")
                .field("count", &self.count)
                .finish()
        }
    }

    impl NvmlBackend {
        /// Initialises NVML and counts the GPUs.
        ///
        /// # Errors
        /// A message when the NVML library or driver is missing or the device count fails.
        pub fn init() -> std::result::Result<Self, String> {
            let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML init failed: {e}"))?;
            let count = nvml
                .device_count()
                .map_err(|e| format!("NVML device count failed: {e}"))?
                as usize;
            Ok(Self { nvml, count })
        }
    }

    impl GpuBackend for NvmlBackend {
        fn device_count(&self) -> usize {
            self.count
        }

        fn name(&self, i: usize) -> String {
            self.nvml
                .device_by_index(i as u32)
                .and_then(|d| d.name())
                .unwrap_or_else(|_| format!("GPU {i}"))
        }

        fn total_energy_mj(&self, i: usize) -> Option<u64> {
            self.nvml
                .device_by_index(i as u32)
                .and_then(|d| d.total_energy_consumption())
                .ok()
        }

        fn power_mw(&self, i: usize) -> Option<u32> {
            self.nvml
                .device_by_index(i as u32)
                .and_then(|d| d.power_usage())
                .ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_of_a_ramp() {
        // P(t) = 100 t on [0, 2]: exact energy 200 J; the trapezoid is exact for linear power.
        let mut pi = PowerIntegrator::default();
        for k in 0..=20 {
            let t = k as f64 * 0.1;
            pi.push(t, 100.0 * t);
        }
        assert!((pi.energy_j() - 200.0).abs() < 1e-9);
        pi.push(1.0, 5.0); // out-of-order: ignored for energy
        assert!((pi.energy_j() - 200.0).abs() < 1e-9);
    }
}
