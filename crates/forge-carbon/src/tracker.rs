//! [`CarbonTracker`]: start/stop, a scope guard and the [`track`] closure form.
//!
//! Source selection per component, at `start()`, by [`TrackingMode`]:
//!
//! | component | `process` (default) | `machine` (CodeCarbon's default) |
//! |---|---|---|
//! | CPU | RAPL packages if readable (whole packages, said so), else this process tree's CPU time x per-thread TDP ([`EnergyMethod::TdpEstimate`]) | RAPL if readable, else full-load TDP x (0.1 + 0.9 load^3) with the machine load from `/proc/stat`, integrated over samples ([`EnergyMethod::MachineLoad`]) |
//! | RAM | RAPL DRAM zones, else process-tree RSS x `ram_w_per_gb` ([`EnergyMethod::RamModel`]) | RAPL DRAM zones, else 5 W per estimated DIMM ([`EnergyMethod::DimmModel`]) |
//! | GPU | NVML (feature `nvml`): energy counters or sampled power; a failed start is a warning | same |
//!
//! `ram_power_w` replaces either RAM model with a constant ([`EnergyMethod::Constant`]).
//!
//! Totals, as CodeCarbon: each component x PUE, `energy_kwh` = their sum,
//! `emissions_kg = energy_kwh x CI / 1000` (CI in g CO2-eq/kWh),
//! `water_consumed_l = energy_kwh x WUE` (when set), `emissions_rate = emissions_kg / duration`.
//!
//! A background sampler thread runs only when something needs sampling (machine load, RAPL
//! wraparounds, GPUs without an energy counter). Without it, start/stop cost a few system
//! calls, so tracking millisecond-long workloads is cheap.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::config::CarbonConfig;
use crate::cpu::{process_share, CpuInfo, CpuPowerModel};
use crate::emissions::{ComponentScope, Emissions, EnergyMethod, TrackingMode};
use crate::error::{CarbonError, Result};
use crate::gpu::{GpuBackend, GpuMeter};
use crate::intensity::Intensity;
use crate::process::{MachineCpuTimes, ProcessProbe, SystemProbe};
use crate::ram::{codecarbon_ram_power_w, estimate_dimm_count, ram_power_w, GIB};
use crate::rapl::{RaplAccumulator, RaplReader};

const J_PER_KWH: f64 = 3.6e6;

type SharedGpu = Arc<Mutex<Box<dyn GpuBackend>>>;

/// CodeCarbon 3.x's machine-mode CPU power at load `l` in [0, 1], as a fraction of full power.
pub fn machine_load_factor(load: f64) -> f64 {
    0.1 + 0.9 * load.clamp(0.0, 1.0).powi(3)
}

#[derive(Default)]
struct Samples {
    rapl: Option<RaplAccumulator>,
    gpu: Option<GpuMeter>,
    rss_sum: f64,
    rss_n: u64,
    ram_used_sum: f64,
    ram_used_n: u64,
    /// Machine-load integration: the last reading (time, counters).
    machine_prev: Option<(f64, MachineCpuTimes)>,
    machine_first: Option<MachineCpuTimes>,
    machine_last: Option<MachineCpuTimes>,
    /// Sum of load-factor x seconds (machine mode).
    load_factor_s: f64,
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
    intensity: Intensity,
    probe: Arc<dyn ProcessProbe>,
    cpu_info: CpuInfo,
    cpu_power: CpuPowerModel,
    logical_cpus: usize,
    ram_total_bytes: Option<u64>,
    rapl: Option<RaplReader>,
    gpu: Option<SharedGpu>,
    init_warnings: Vec<String>,
    os: String,
    arm: bool,
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
    /// A tracker on the real machine: [`SystemProbe`] readings, RAPL under
    /// `config.powercap_root`, and NVML when built with feature `nvml`.
    ///
    /// # Errors
    /// Every error of [`CarbonConfig::validate`]. Missing RAPL or NVML, or an unknown country, is
    /// not an error (warnings in the records).
    pub fn new(config: CarbonConfig) -> Result<Self> {
        let mut warnings = Vec::new();
        let gpu = if config.use_nvml {
            default_gpu_backend(&mut warnings)
        } else {
            None
        };
        let mut t = Self::with_parts(config, Arc::new(SystemProbe), gpu)?;
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
        let intensity = config.resolved_intensity();
        let cpu_info = probe
            .cpuinfo()
            .map(|s| CpuInfo::parse(&s))
            .unwrap_or_default();
        let logical_cpus = probe.logical_cpus().max(1);
        let cpu_power = CpuPowerModel::resolve(&cpu_info, logical_cpus, config.tdp_w);
        let mut init_warnings = intensity.warnings.clone();
        init_warnings.extend(probe.limitations());
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
        if rapl.is_some() && config.tracking_mode == TrackingMode::Process {
            init_warnings.push(
                "RAPL measures whole CPU packages: the CPU (and DRAM) figures are machine scope although tracking_mode = process".into(),
            );
        }
        tracing::debug!(cpu = %cpu_info.model_name, w_per_thread = cpu_power.w_per_thread, source = %cpu_power.source, "CPU power model");
        let arm = matches!(std::env::consts::ARCH, "arm" | "aarch64");
        Ok(Self {
            intensity,
            ram_total_bytes: probe.total_ram_bytes(),
            probe,
            cpu_info,
            cpu_power,
            logical_cpus,
            rapl,
            gpu: gpu.map(|g| Arc::new(Mutex::new(g))),
            init_warnings,
            os: crate::util::os_string(),
            arm,
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

    /// The carbon intensity in use and the location it stands for.
    pub fn intensity(&self) -> &Intensity {
        &self.intensity
    }

    /// True between `start` and `stop`.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn machine_load_mode(&self) -> bool {
        self.config.tracking_mode == TrackingMode::Machine && self.rapl.is_none()
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
        if let Some(rss) = self.probe.process_tree_rss_bytes() {
            samples.rss_sum += rss as f64;
            samples.rss_n += 1;
        }
        if let Some(u) = self.probe.used_ram_bytes() {
            samples.ram_used_sum += u as f64;
            samples.ram_used_n += 1;
        }
        let m0 = self.probe.machine_cpu_times();
        if m0.is_none() && self.machine_load_mode() {
            warnings.push(
                "machine CPU load unreadable: machine-mode CPU power assumes idle (10% of TDP)"
                    .into(),
            );
        }
        samples.machine_first = m0;
        samples.machine_prev = m0.map(|m| (0.0, m));
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        if let Some(g) = &self.gpu {
            let backend = g.lock().unwrap_or_else(|p| p.into_inner());
            samples.gpu = Some(GpuMeter::start(backend.as_ref(), 0.0));
        }
        let needs_thread = samples.rapl.is_some()
            || self.machine_load_mode()
            || samples.gpu.as_ref().is_some_and(GpuMeter::needs_sampling);
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
        let cpu0 = self.probe.process_tree_cpu_time_s();
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
    /// the CSV (`output_file`) and `emissions.jsonl` there ([`crate::output::append_record`]).
    ///
    /// A failed file write does not lose the measurement: it is logged (`tracing::warn!`) and
    /// listed in [`Emissions::warnings`]. Use [`CarbonTracker::stop_no_output`] plus
    /// [`crate::output::append_record`] to handle write errors yourself.
    ///
    /// # Errors
    /// [`CarbonError::NotStarted`] when not running.
    pub fn stop(&mut self) -> Result<Emissions> {
        let mut e = self.stop_measurement()?;
        if let Some(dir) = self.config.output_dir.clone() {
            match write_outputs(&dir, &self.config.output_file, &e) {
                Ok(notes) => e.warnings.extend(notes),
                Err(err) => {
                    tracing::warn!(error = %err, "could not write the emissions files");
                    e.warnings.push(format!("output not written: {err}"));
                }
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
        let cpu1 = self.probe.process_tree_cpu_time_s();
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
        let mode = self.config.tracking_mode;
        let n = self.logical_cpus as f64;
        let full_w = self.cpu_power.w_per_thread * n;
        let mut components = Vec::new();

        let (cpu_j, cpu_method, ram_rapl_j) = match &samples.rapl {
            Some(acc) => {
                let (pkg, dram) = acc.energy_j();
                let dram = self.rapl.as_ref().filter(|r| r.has_dram()).map(|_| dram);
                components.push(ComponentScope {
                    component: "cpu".into(),
                    method: EnergyMethod::Rapl,
                    scope: "package (RAPL)".into(),
                    assumed_w: None,
                    detail: "RAPL package energy counters".into(),
                });
                (pkg, EnergyMethod::Rapl, dram)
            }
            None if mode == TrackingMode::Machine => {
                // Time not covered by load samples (unreadable /proc/stat) counts as idle.
                let covered = samples.machine_prev.map_or(0.0, |(t, _)| t.min(wall));
                let factor_s =
                    samples.load_factor_s + machine_load_factor(0.0) * (wall - covered).max(0.0);
                components.push(ComponentScope {
                    component: "cpu".into(),
                    method: EnergyMethod::MachineLoad,
                    scope: "machine".into(),
                    assumed_w: Some(full_w),
                    detail: format!(
                        "{full_w} W full load x (0.1 + 0.9 x load^3); {}",
                        self.cpu_power.source
                    ),
                });
                (full_w * factor_s, EnergyMethod::MachineLoad, None)
            }
            None => {
                components.push(ComponentScope {
                    component: "cpu".into(),
                    method: EnergyMethod::TdpEstimate,
                    scope: "process tree".into(),
                    assumed_w: Some(full_w),
                    detail: format!(
                        "{} W per logical CPU x process-tree CPU time; {}",
                        self.cpu_power.w_per_thread, self.cpu_power.source
                    ),
                });
                (
                    self.cpu_power.energy_j(cpu_s),
                    EnergyMethod::TdpEstimate,
                    None,
                )
            }
        };
        let rss_mean = if samples.rss_n > 0 {
            samples.rss_sum / samples.rss_n as f64
        } else {
            0.0
        };
        let total_gb = self.ram_total_bytes.map_or(0.0, |b| b as f64 / GIB);
        let (ram_j, ram_method, ram_scope) = match (ram_rapl_j, self.config.ram_power_w, mode) {
            (Some(j), _, _) => (
                j,
                EnergyMethod::Rapl,
                (
                    "DRAM (RAPL)".to_string(),
                    None,
                    "RAPL DRAM counters".to_string(),
                ),
            ),
            (None, Some(w), _) => (
                w * wall,
                EnergyMethod::Constant,
                (
                    mode.as_str().to_string(),
                    Some(w),
                    "ram_power_w (force_ram_power)".to_string(),
                ),
            ),
            (None, None, TrackingMode::Machine) => {
                let w = codecarbon_ram_power_w(total_gb, self.arm);
                (
                    w * wall,
                    EnergyMethod::DimmModel,
                    (
                        "machine".to_string(),
                        Some(w),
                        format!(
                            "{:.1} GiB total -> {} DIMM(s) estimated (CodeCarbon 3.x, 5 W each, >= 2)",
                            total_gb,
                            estimate_dimm_count(total_gb)
                        ),
                    ),
                )
            }
            (None, None, TrackingMode::Process) => {
                let w = ram_power_w(rss_mean, self.config.ram_w_per_gb);
                (
                    w * wall,
                    EnergyMethod::RamModel,
                    (
                        "process tree".to_string(),
                        Some(w),
                        format!(
                            "{:.3} GiB mean RSS x {} W/GB",
                            rss_mean / GIB,
                            self.config.ram_w_per_gb
                        ),
                    ),
                )
            }
        };
        components.push(ComponentScope {
            component: "ram".into(),
            method: ram_method,
            scope: ram_scope.0,
            assumed_w: ram_scope.1,
            detail: ram_scope.2,
        });
        let (gpu_j, gpu_method, gpu_model, gpu_count) = match &samples.gpu {
            Some(m) => (m.energy_j(), m.method(), m.model_string(), m.device_count()),
            None => (0.0, None, None, 0),
        };
        if let Some(gm) = gpu_method {
            components.push(ComponentScope {
                component: "gpu".into(),
                method: gm,
                scope: "GPUs (NVML)".into(),
                assumed_w: None,
                detail: format!("{gpu_count} device(s)"),
            });
        }
        let ci = self.intensity.g_per_kwh;
        let pue = self.config.pue;
        // CodeCarbon applies the PUE to each component; the total is their sum.
        let kwh = |j: f64| j / J_PER_KWH * pue;
        let (cpu_kwh, gpu_kwh, ram_kwh) = (kwh(cpu_j), kwh(gpu_j), kwh(ram_j));
        let energy_kwh = cpu_kwh + gpu_kwh + ram_kwh;
        let emissions_kg = energy_kwh * ci / 1000.0;
        let per_s = |x: f64| if wall > 0.0 { x / wall } else { 0.0 };
        let water = self.config.wue.map(|w| w * energy_kwh);
        let tdp_used = matches!(
            cpu_method,
            EnergyMethod::TdpEstimate | EnergyMethod::MachineLoad
        );
        let cpu_util = match (samples.machine_first, samples.machine_last) {
            (Some(a), Some(b)) if b.total_s > a.total_s => Some(b.load_since(&a) * 100.0),
            _ => None,
        };
        let ram_used_mean =
            (samples.ram_used_n > 0).then(|| samples.ram_used_sum / samples.ram_used_n as f64);
        Ok(Emissions {
            timestamp: crate::util::utc_timestamp(run.wall0),
            project_name: self.config.project_name.clone(),
            run_id: run.run_id,
            experiment_id: self.config.experiment_id.clone(),
            duration_s: wall,
            cpu_energy_kwh: cpu_kwh,
            gpu_energy_kwh: gpu_kwh,
            ram_energy_kwh: ram_kwh,
            energy_kwh,
            emissions_kg,
            emissions_rate_kg_per_s: per_s(emissions_kg),
            cpu_power_w: per_s(cpu_j) * pue,
            gpu_power_w: per_s(gpu_j) * pue,
            ram_power_w: per_s(ram_j) * pue,
            cpu_method,
            gpu_method,
            ram_method,
            process_cpu_s: cpu_s,
            process_cpu_share: process_share(cpu_s, wall, self.logical_cpus),
            cpu_w_per_thread: tdp_used.then_some(self.cpu_power.w_per_thread),
            tdp_source: tdp_used.then(|| self.cpu_power.source.to_string()),
            pue,
            carbon_intensity_g_per_kwh: ci,
            intensity_source: self.intensity.source,
            country_iso: self.intensity.country_iso.clone(),
            country_name: self.intensity.country_name.clone(),
            region: self.intensity.region.clone(),
            cloud_provider: self.config.cloud_provider.clone(),
            cloud_region: self.config.cloud_region.clone(),
            intensity_detail: self.intensity.detail.clone(),
            wue_l_per_kwh: self.config.wue,
            water_consumed_l: water,
            cpu_utilization_percent: cpu_util,
            gpu_utilization_percent: (gpu_count == 0).then_some(0.0),
            ram_utilization_percent: ram_used_mean
                .zip(self.ram_total_bytes.filter(|&t| t > 0))
                .map(|(u, t)| 100.0 * u / t as f64),
            ram_used_gb: ram_used_mean.map(|u| u / GIB),
            cpu_model: self.cpu_info.model_name.clone(),
            cpu_count: self.logical_cpus,
            gpu_model,
            gpu_count,
            ram_total_gb: total_gb,
            ram_process_gb: rss_mean / GIB,
            tracking_mode: mode,
            components,
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

fn write_outputs(dir: &std::path::Path, csv_name: &str, e: &Emissions) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|err| CarbonError::io(dir, err))?;
    crate::output::append_record(&dir.join(csv_name), &dir.join(crate::output::JSON_FILE), e)
}

fn take_sample(
    samples: &Mutex<Samples>,
    gpu: Option<&SharedGpu>,
    rapl: Option<&RaplReader>,
    probe: &dyn ProcessProbe,
    t_s: f64,
) {
    let rapl_reading = rapl.map(RaplReader::read);
    let rss = probe.process_tree_rss_bytes();
    let used = probe.used_ram_bytes();
    let machine = probe.machine_cpu_times();
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
    if let Some(u) = used {
        s.ram_used_sum += u as f64;
        s.ram_used_n += 1;
    }
    if let Some(m) = machine {
        if let Some((t_prev, prev)) = s.machine_prev {
            let dt = (t_s - t_prev).max(0.0);
            s.load_factor_s += machine_load_factor(m.load_since(&prev)) * dt;
        }
        s.machine_prev = Some((t_s, m));
        s.machine_last = Some(m);
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
