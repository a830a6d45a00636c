//! [`CarbonTracker`]: start/stop, a scope guard and the [`track`] closure form.
//!
//! Source selection per component, at `start()`:
//! - CPU: RAPL package counters when `use_rapl` and readable under `powercap_root`
//!   ([`EnergyMethod::Rapl`], whole packages, `tracking_mode = "machine"`); otherwise this process's
//!   CPU time x per-thread TDP ([`EnergyMethod::TdpEstimate`], see [`crate::cpu`],
//!   `tracking_mode = "process"`).
//! - RAM: RAPL DRAM zones when present, else the RSS model of [`crate::ram`] ([`EnergyMethod::RamModel`]).
//! - GPU: NVML (feature `nvml`, `use_nvml`) energy counters or sampled power (see [`crate::gpu`]);
//!   a failed NVML start logs a warning, is recorded in [`Emissions::warnings`] and the run goes on
//!   without GPU energy.
//!
//! Totals: `energy_kwh = (E_cpu + E_gpu + E_ram) x PUE`, `emissions_kg = energy_kwh x CI / 1000`
//! (CI in g CO2-eq/kWh), `emissions_rate = emissions_kg / duration`.
//!
//! A background sampler thread runs only when something needs sampling (RAPL, to catch repeated
//! counter wraparounds; GPUs without an energy counter). Without it, start/stop cost a few
//! system calls, so tracking millisecond-long workloads is cheap.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{CarbonConfig, IntensitySource};
use crate::cpu::{process_share, CpuInfo, CpuPowerModel};
use crate::emissions::{Emissions, EnergyMethod};
use crate::error::{CarbonError, Result};
use crate::gpu::{GpuBackend, GpuMeter};
use crate::intensity::Country;
use crate::process::{LinuxProbe, ProcessProbe};
use crate::ram::{ram_power_w, GIB};
use crate::rapl::{RaplAccumulator, RaplReader};

const J_PER_KWH: f64 = 3.6e6;

type SharedGpu = Arc<Mutex<Box<dyn GpuBackend>>>;

#[derive(Default)]
struct Samples {
    rapl: Option<RaplAccumulator>,
    gpu: Option<GpuMeter>,
    rss_sum: f64,
    rss_n: u64,
    errors: Vec<String>,
}

struct Running {
    t0: Instant,
    wall0: SystemTime,
    cpu0: f64,
    run_id: String,
    samples: Arc<Mutex<Samples>>,
    sampler: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    warnings: Vec<String>,
}

/// Tracks the energy and CO2 of the code run between [`CarbonTracker::start`] and
/// [`CarbonTracker::stop`]. Reusable: each start/stop pair is one run with its own `run_id`.
pub struct CarbonTracker {
    config: CarbonConfig,
    intensity: (f64, IntensitySource),
    country: &'static Country,
    probe: Arc<dyn ProcessProbe>,
    cpu_info: CpuInfo,
    cpu_power: CpuPowerModel,
    logical_cpus: usize,
    ram_total_bytes: Option<u64>,
    rapl: Option<RaplReader>,
    gpu: Option<SharedGpu>,
    init_warnings: Vec<String>,
    os: String,
    running: Option<Running>,
}

impl std::fmt::Debug for CarbonTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarbonTracker")
            .field("config", &self.config)
            .field("cpu_model", &self.cpu_info.model_name)
            .field("cpu_power", &self.cpu_power)
            .field("rapl", &self.rapl.is_some())
            .field("gpu", &self.gpu.is_some())
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl CarbonTracker {
    /// A tracker on the real machine: /proc readings, RAPL under `config.powercap_root`, and NVML
    /// when built with feature `nvml`.
    ///
    /// # Errors
    /// Every error of [`CarbonConfig::validate`]. Missing RAPL or NVML is not an error.
    pub fn new(config: CarbonConfig) -> Result<Self> {
        let mut warnings = Vec::new();
        let gpu = if config.use_nvml {
            default_gpu_backend(&mut warnings)
        } else {
            None
        };
        let mut t = Self::with_parts(config, Arc::new(LinuxProbe), gpu)?;
        t.init_warnings.extend(warnings);
        Ok(t)
    }

    /// A tracker with injected readings: `probe` for process/machine figures and an optional GPU
    /// backend (tests, or a custom GPU source). RAPL is still read from `config.powercap_root`.
    ///
    /// # Errors
    /// Every error of [`CarbonConfig::validate`].
    pub fn with_parts(
        config: CarbonConfig,
        probe: Arc<dyn ProcessProbe>,
        gpu: Option<Box<dyn GpuBackend>>,
    ) -> Result<Self> {
        config.validate()?;
        let intensity = config.resolved_intensity()?;
        let country = crate::intensity::country(&config.country_iso)?;
        let cpu_info = probe
            .cpuinfo()
            .map(|s| CpuInfo::parse(&s))
            .unwrap_or_default();
        let logical_cpus = probe.logical_cpus().max(1);
        let cpu_power = CpuPowerModel::resolve(&cpu_info, logical_cpus, config.tdp_w);
        let mut init_warnings = Vec::new();
        let rapl = if config.use_rapl {
            match RaplReader::open(&config.powercap_root) {
                Ok(r) => Some(r),
                Err(e) => {
                    if config.powercap_root.exists() {
                        tracing::warn!(error = %e, "RAPL unusable; CPU energy falls back to the TDP estimate");
                        init_warnings.push(format!(
                            "RAPL unusable ({e}); CPU energy estimated from TDP"
                        ));
                    } else {
                        tracing::debug!(error = %e, "no RAPL; CPU energy estimated from TDP");
                    }
                    None
                }
            }
        } else {
            None
        };
        tracing::debug!(cpu = %cpu_info.model_name, w_per_thread = cpu_power.w_per_thread, source = %cpu_power.source, "CPU power model");
        Ok(Self {
            intensity,
            country,
            ram_total_bytes: probe.total_ram_bytes(),
            probe,
            cpu_info,
            cpu_power,
            logical_cpus,
            rapl,
            gpu: gpu.map(|g| Arc::new(Mutex::new(g))),
            init_warnings,
            os: crate::util::os_string(),
            running: None,
            config,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &CarbonConfig {
        &self.config
    }

    /// The CPU power model the TDP estimate uses.
    pub fn cpu_power_model(&self) -> &CpuPowerModel {
        &self.cpu_power
    }

    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a run.
    ///
    /// # Errors
    /// [`CarbonError::AlreadyStarted`] when already running.
    pub fn start(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Err(CarbonError::AlreadyStarted);
        }
        let mut warnings = self.init_warnings.clone();
        let mut samples = Samples::default();
        if let Some(r) = &self.rapl {
            match RaplAccumulator::start(r) {
                Ok(acc) => samples.rapl = Some(acc),
                Err(e) => {
                    tracing::warn!(error = %e, "RAPL read failed; CPU energy estimated from TDP");
                    warnings.push(format!(
                        "RAPL read failed ({e}); CPU energy estimated from TDP"
                    ));
                }
            }
        }
        if let Some(rss) = self.probe.process_rss_bytes() {
            samples.rss_sum += rss as f64;
            samples.rss_n += 1;
        }
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        if let Some(g) = &self.gpu {
            let backend = g.lock().unwrap_or_else(|p| p.into_inner());
            samples.gpu = Some(GpuMeter::start(backend.as_ref(), 0.0));
        }
        let needs_thread =
            samples.rapl.is_some() || samples.gpu.as_ref().is_some_and(GpuMeter::needs_sampling);
        let samples = Arc::new(Mutex::new(samples));
        let sampler = needs_thread.then(|| {
            let (tx, rx) = mpsc::channel::<()>();
            let period = Duration::from_millis(self.config.sample_interval_ms);
            let (samples, gpu, rapl, probe) = (
                Arc::clone(&samples),
                self.gpu.clone(),
                self.rapl.clone(),
                Arc::clone(&self.probe),
            );
            let handle = std::thread::Builder::new()
                .name("forge-carbon-sampler".into())
                .spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                        let t = t0.elapsed().as_secs_f64();
                        take_sample(&samples, gpu.as_ref(), rapl.as_ref(), probe.as_ref(), t);
                    }
                });
            match handle {
                Ok(h) => Some((tx, h)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not spawn the sampler thread; sampling at start/stop only");
                    None
                }
            }
        });
        let run_id = crate::util::uuid_v4();
        let cpu0 = self.probe.process_cpu_time_s();
        self.running = Some(Running {
            t0,
            wall0,
            cpu0,
            run_id,
            samples,
            sampler: sampler.flatten(),
            warnings,
        });
        Ok(())
    }

    /// Stops the run, computes its [`Emissions`] and, when `output_dir` is set, appends them to
    /// `emissions.csv` and `emissions.json` there.
    ///
    /// A failed file write does not lose the measurement: it is logged (`tracing::warn!`) and
    /// listed in [`Emissions::warnings`]. Use [`CarbonTracker::stop_no_output`] plus
    /// [`crate::append_csv`] to handle write errors yourself.
    ///
    /// # Errors
    /// [`CarbonError::NotStarted`] when not running.
    pub fn stop(&mut self) -> Result<Emissions> {
        let mut e = self.stop_measurement()?;
        if let Some(dir) = self.config.output_dir.clone() {
            if let Err(err) = write_outputs(&dir, &e) {
                tracing::warn!(error = %err, "could not write the emissions files");
                e.warnings.push(format!("output not written: {err}"));
            }
        }
        Ok(e)
    }

    /// Stops the run and returns its [`Emissions`] without writing any file.
    ///
    /// # Errors
    /// [`CarbonError::NotStarted`] when not running.
    pub fn stop_no_output(&mut self) -> Result<Emissions> {
        self.stop_measurement()
    }

    fn stop_measurement(&mut self) -> Result<Emissions> {
        let cpu1 = self.probe.process_cpu_time_s();
        let run = self.running.take().ok_or(CarbonError::NotStarted)?;
        let wall = run.t0.elapsed().as_secs_f64();
        if let Some((tx, h)) = run.sampler {
            let _ = tx.send(());
            let _ = h.join();
        }
        take_sample(
            &run.samples,
            self.gpu.as_ref(),
            self.rapl.as_ref(),
            self.probe.as_ref(),
            wall,
        );
        let samples = run.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut warnings = run.warnings;
        warnings.extend(samples.errors.iter().cloned());
        let cpu_s = (cpu1 - run.cpu0).max(0.0);

        let (cpu_j, cpu_method, ram_rapl_j, tracking_mode) = match &samples.rapl {
            Some(acc) => {
                let (pkg, dram) = acc.energy_j();
                let dram = self.rapl.as_ref().filter(|r| r.has_dram()).map(|_| dram);
                (pkg, EnergyMethod::Rapl, dram, "machine")
            }
            None => (
                self.cpu_power.energy_j(cpu_s),
                EnergyMethod::TdpEstimate,
                None,
                "process",
            ),
        };
        let rss_mean = if samples.rss_n > 0 {
            samples.rss_sum / samples.rss_n as f64
        } else {
            0.0
        };
        let (ram_j, ram_method) = match ram_rapl_j {
            Some(j) => (j, EnergyMethod::Rapl),
            None => (
                ram_power_w(rss_mean, self.config.ram_w_per_gb) * wall,
                EnergyMethod::RamModel,
            ),
        };
        let (gpu_j, gpu_method, gpu_model, gpu_count) = match &samples.gpu {
            Some(m) => (m.energy_j(), m.method(), m.model_string(), m.device_count()),
            None => (0.0, None, None, 0),
        };
        let (ci, ci_source) = self.intensity;
        let pue = self.config.pue;
        let kwh = |j: f64| j / J_PER_KWH;
        let energy_kwh = kwh(cpu_j + gpu_j + ram_j) * pue;
        let emissions_kg = energy_kwh * ci / 1000.0;
        let per_s = |x: f64| if wall > 0.0 { x / wall } else { 0.0 };
        let tdp_used = cpu_method == EnergyMethod::TdpEstimate;
        Ok(Emissions {
            timestamp: crate::util::utc_timestamp(run.wall0),
            project_name: self.config.project_name.clone(),
            run_id: run.run_id,
            experiment_id: self.config.experiment_id.clone(),
            duration_s: wall,
            cpu_energy_kwh: kwh(cpu_j),
            gpu_energy_kwh: kwh(gpu_j),
            ram_energy_kwh: kwh(ram_j),
            energy_kwh,
            emissions_kg,
            emissions_rate_kg_per_s: per_s(emissions_kg),
            cpu_power_w: per_s(cpu_j),
            gpu_power_w: per_s(gpu_j),
            ram_power_w: per_s(ram_j),
            cpu_method,
            gpu_method,
            ram_method,
            process_cpu_s: cpu_s,
            process_cpu_share: process_share(cpu_s, wall, self.logical_cpus),
            cpu_w_per_thread: tdp_used.then_some(self.cpu_power.w_per_thread),
            tdp_source: tdp_used.then(|| self.cpu_power.source.to_string()),
            pue,
            carbon_intensity_g_per_kwh: ci,
            intensity_source: ci_source,
            country_iso: self.country.iso.to_string(),
            country_name: self.country.name.to_string(),
            region: self.config.region.clone(),
            cpu_model: self.cpu_info.model_name.clone(),
            cpu_count: self.logical_cpus,
            gpu_model,
            gpu_count,
            ram_total_gb: self.ram_total_bytes.map_or(0.0, |b| b as f64 / GIB),
            ram_process_gb: rss_mean / GIB,
            tracking_mode: tracking_mode.to_string(),
            os: self.os.clone(),
            forge_carbon_version: env!("CARGO_PKG_VERSION").to_string(),
            warnings,
        })
    }

    /// Starts a run and returns a guard that stops it when finished or dropped.
    ///
    /// # Errors
    /// As [`CarbonTracker::start`].
    pub fn guard(mut self) -> Result<TrackingGuard> {
        self.start()?;
        Ok(TrackingGuard {
            tracker: Some(self),
        })
    }
}

impl Drop for CarbonTracker {
    fn drop(&mut self) {
        if let Some(run) = self.running.take() {
            if let Some((tx, h)) = run.sampler {
                let _ = tx.send(());
                let _ = h.join();
            }
        }
    }
}

fn write_outputs(dir: &std::path::Path, e: &Emissions) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|err| CarbonError::io(dir, err))?;
    crate::output::append_csv(&dir.join(crate::output::CSV_FILE), e)?;
    crate::output::append_json(&dir.join(crate::output::JSON_FILE), e)
}

fn take_sample(
    samples: &Mutex<Samples>,
    gpu: Option<&SharedGpu>,
    rapl: Option<&RaplReader>,
    probe: &dyn ProcessProbe,
    t_s: f64,
) {
    let rapl_reading = rapl.map(RaplReader::read);
    let rss = probe.process_rss_bytes();
    let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reading) = rapl_reading {
        match reading {
            Ok(r) => {
                if let Some(acc) = s.rapl.as_mut() {
                    acc.update(&r);
                }
            }
            Err(e) => {
                if s.errors.is_empty() {
                    tracing::warn!(error = %e, "RAPL sample failed");
                }
                s.errors.push(format!("RAPL sample failed: {e}"));
            }
        }
    }
    if let Some(rss) = rss {
        s.rss_sum += rss as f64;
        s.rss_n += 1;
    }
    if let (Some(g), Some(meter)) = (gpu, s.gpu.as_mut()) {
        let backend = g.lock().unwrap_or_else(|p| p.into_inner());
        meter.sample(backend.as_ref(), t_s);
    }
}

#[cfg(feature = "nvml")]
fn default_gpu_backend(warnings: &mut Vec<String>) -> Option<Box<dyn GpuBackend>> {
    match crate::gpu::nvml::NvmlBackend::init() {
        Ok(b) if b.device_count() > 0 => Some(Box::new(b)),
        Ok(_) => {
            tracing::info!("NVML started but reports no GPU");
            None
        }
        Err(msg) => {
            tracing::warn!(error = %msg, "NVML unavailable; GPU energy not tracked");
            warnings.push(format!("{msg}; GPU energy not tracked"));
            None
        }
    }
}

#[cfg(not(feature = "nvml"))]
fn default_gpu_backend(_warnings: &mut Vec<String>) -> Option<Box<dyn GpuBackend>> {
    None
}

/// A running tracker that stops when [`TrackingGuard::finish`] is called or when dropped
/// (on drop, output files are still written and errors are logged).
pub struct TrackingGuard {
    tracker: Option<CarbonTracker>,
}

impl std::fmt::Debug for TrackingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingGuard").finish_non_exhaustive()
    }
}

impl TrackingGuard {
    /// Stops the run and returns its emissions.
    ///
    /// # Errors
    /// As [`CarbonTracker::stop`].
    pub fn finish(mut self) -> Result<Emissions> {
        match self.tracker.take() {
            Some(mut t) => t.stop(),
            None => Err(CarbonError::NotStarted),
        }
    }
}

impl Drop for TrackingGuard {
    fn drop(&mut self) {
        if let Some(mut t) = self.tracker.take() {
            match t.stop() {
                Ok(e) => tracing::info!(
                    energy_kwh = e.energy_kwh,
                    emissions_kg = e.emissions_kg,
                    "tracking guard dropped; run recorded"
                ),
                Err(err) => tracing::warn!(error = %err, "tracking guard dropped; stop failed"),
            }
        }
    }
}

/// Runs `f` under a fresh tracker and returns its value with the run's emissions.
///
/// Each call builds a tracker (reads /proc/cpuinfo, probes RAPL and, with `nvml`, starts NVML);
/// for many short runs, keep one [`CarbonTracker`] and call `start`/`stop` instead.
///
/// # Errors
/// As [`CarbonTracker::new`] and [`CarbonTracker::stop`].
pub fn track<T>(config: &CarbonConfig, f: impl FnOnce() -> T) -> Result<(T, Emissions)> {
    let mut t = CarbonTracker::new(config.clone())?;
    t.start()?;
    let out = f();
    let e = t.stop()?;
    Ok((out, e))
}
