//! `forge track -- CMD ARGS...`: runs a command and measures the energy and CO2 of its whole
//! process tree with forge-carbon, then appends a CodeCarbon-compatible row to a CSV file.
//!
//! - CPU: RAPL package counters when readable (the whole machine, as CodeCarbon's `machine`
//!   mode), else the tree's CPU time x the per-thread TDP of forge-carbon's CPU table
//!   ([`crate::commands::tree`] explains how the tree's CPU time is read).
//! - RAM: RAPL DRAM zones when present, else the tree's mean resident memory x 0.375 W/GB.
//! - GPU: NVML when built with feature `nvml` (all visible GPUs), else not tracked.
//!
//! Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to `forge` by another process (`kill`,
//! `timeout`, a job scheduler) are forwarded to the command; a Ctrl-C typed in the terminal
//! already reaches the command (it is in the terminal's foreground process group) and is not
//! sent twice. `forge` itself keeps running until the command exits and then writes the
//! measurement of the interrupted run. The exit code is the command's (128 + n when it was
//! killed by signal n).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clap::ValueEnum;
use forge_carbon::{CarbonConfig, CarbonTracker, Emissions, GpuBackend, TrackingMode};
use serde::Serialize;

use crate::commands::tree::TreeProbe;
use crate::error::{CliError, Result, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND};
use crate::ui::Ui;

/// Arguments of `forge track`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge track -- python train.py --epochs 3
  forge track --country FRA --pue 1.2 --output runs/emissions.csv --project bert -- ./train.sh
  forge track --json -- make -j4 > /dev/null   # the JSON record goes to stdout, after the command's output

Exit code: the command's own (128 + n if it was killed by signal n); 126/127 if it cannot be run.")]
pub struct TrackArgs {
    /// ISO 3166-1 alpha-3 country code for the carbon intensity (e.g. FRA, USA; WLD = world
    /// average). Default: $FORGE_COUNTRY or WLD.
    #[arg(long, value_name = "ISO")]
    pub country: Option<String>,
    /// What the CPU and RAM figures cover: the command's process tree (default), or the whole
    /// machine as CodeCarbon's default `machine` mode (CPU load x TDP curve, DIMM RAM model).
    #[arg(long, value_enum, value_name = "MODE")]
    pub tracking_mode: Option<Mode>,
    /// Power usage effectiveness of the data centre (>= 1.0). Default: $FORGE_PUE or 1.0.
    #[arg(long, value_name = "X")]
    pub pue: Option<f64>,
    /// Carbon intensity override, g CO2-eq per kWh (e.g. a live grid value).
    #[arg(long, value_name = "G_PER_KWH")]
    pub carbon_intensity: Option<f64>,
    /// Full-load power of all the machine's logical CPUs, W (overrides the TDP table).
    #[arg(long, value_name = "W")]
    pub tdp: Option<f64>,
    /// CSV file the CodeCarbon-compatible row is appended to (created with a header if absent).
    #[arg(long, short, value_name = "FILE", default_value = "emissions.csv")]
    pub output: PathBuf,
    /// Do not write the CSV row (print only).
    #[arg(long)]
    pub no_output: bool,
    /// Project name recorded in the row.
    #[arg(long, value_name = "NAME", default_value = "forge")]
    pub project: String,
    /// Experiment id recorded in the row.
    #[arg(long, value_name = "ID", default_value = "")]
    pub experiment: String,
    /// Memory sampling period of the process tree, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// The command to run and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `--tracking-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The command's process tree only.
    Process,
    /// The whole machine.
    Machine,
}

/// The result of `forge track`, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct TrackReport {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The exit code `forge` returns (the command's, or 128 + signal).
    pub exit_code: i32,
    /// The signal that killed the command, if any.
    pub signal: Option<i32>,
    /// Whether a SIGINT/SIGTERM/SIGHUP/SIGQUIT reached `forge` during the run.
    pub interrupted: bool,
    /// Distinct descendant processes seen by the memory sampler.
    pub processes_seen: usize,
    /// Largest sampled resident memory of the tree, bytes.
    pub peak_rss_bytes: u64,
    /// Descendants still running when the command exited (not waited for).
    pub still_running: usize,
    /// The CSV file the row was appended to (`null` with `--no-output`).
    pub output: Option<PathBuf>,
    /// The measurement (forge-carbon's record).
    pub emissions: Emissions,
}

const FORWARDED: [i32; 4] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// Forwards termination signals sent by other processes to the child (see the module docs).
struct Forwarder {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    interrupted: Arc<AtomicBool>,
}

impl Forwarder {
    fn install(child: Arc<AtomicI32>) -> Result<Self> {
        use signal_hook::iterator::exfiltrator::origin::WithOrigin;
        use signal_hook::low_level::siginfo::Cause;
        let mut signals = signal_hook::iterator::SignalsInfo::<WithOrigin>::new(FORWARDED)
            .map_err(|e| CliError::Internal(format!("cannot install signal handlers: {e}")))?;
        let handle = signals.handle();
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&interrupted);
        let thread = std::thread::Builder::new()
            .name("forge-track-signals".into())
            .spawn(move || {
                for origin in signals.forever() {
                    flag.store(true, Ordering::SeqCst);
                    // A terminal's Ctrl-C / Ctrl-\ comes from the kernel and reaches the
                    // command through its process group already.
                    if origin.cause == Cause::Kernel {
                        tracing::debug!(signal = origin.signal, "terminal signal, not forwarded");
                        continue;
                    }
                    let pid = child.load(Ordering::SeqCst);
                    if pid > 0 {
                        tracing::info!(
                            signal = origin.signal,
                            pid,
                            "forwarding signal to the command"
                        );
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(pid, origin.signal) };
                    }
                }
            })
            .map_err(|e| CliError::Internal(format!("cannot start the signal thread: {e}")))?;
        Ok(Self {
            handle,
            thread: Some(thread),
            interrupted,
        })
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn carbon_config(a: &TrackArgs) -> Result<CarbonConfig> {
    let mut c = CarbonConfig::from_env()?;
    c.project_name = a.project.clone();
    c.experiment_id = a.experiment.clone();
    if let Some(iso) = &a.country {
        // the library falls back to the world average for an unknown code (as CodeCarbon);
        // on the command line an unknown code is a typo, so it is an error here
        if forge_carbon::intensity::country(iso).is_none() && !iso.eq_ignore_ascii_case("WLD") {
            return Err(CliError::Usage(format!(
                "unknown --country {iso:?}: expected an ISO 3166-1 alpha-3 code (e.g. FRA, USA, DEU) or WLD for the world average"
            )));
        }
        c.country_iso = iso.to_ascii_uppercase();
    }
    if let Some(m) = a.tracking_mode {
        c.tracking_mode = match m {
            Mode::Process => TrackingMode::Process,
            Mode::Machine => TrackingMode::Machine,
        };
    }
    if let Some(p) = a.pue {
        c.pue = p;
    }
    if let Some(ci) = a.carbon_intensity {
        c.carbon_intensity_g_per_kwh = Some(ci);
    }
    if let Some(t) = a.tdp {
        c.tdp_w = Some(t);
    }
    c.output_dir = None;
    c.validate()?;
    Ok(c)
}

#[cfg(feature = "nvml")]
fn gpu_backend(warnings: &mut Vec<String>) -> Option<Box<dyn GpuBackend>> {
    match forge_carbon::gpu::nvml::NvmlBackend::init() {
        Ok(b) if b.device_count() > 0 => Some(Box::new(b)),
        Ok(_) => None,
        Err(msg) => {
            tracing::warn!(error = %msg, "NVML unavailable; GPU energy not tracked");
            warnings.push(format!("{msg}; GPU energy not tracked"));
            None
        }
    }
}

#[cfg(not(feature = "nvml"))]
fn gpu_backend(_warnings: &mut Vec<String>) -> Option<Box<dyn GpuBackend>> {
    None
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }
}

/// Waits for `child`, reaping every orphaned descendant re-parented to us on the way.
fn wait_for(child: i32) -> Result<Ended> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(CliError::Internal(format!("waitpid failed: {err}")));
        }
        if pid == child {
            if libc::WIFEXITED(status) {
                return Ok(Ended::Exited(libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Ended::Signaled(libc::WTERMSIG(status)));
            }
        }
    }
}

/// Reaps descendants that have already exited (orphans re-parented to us), without blocking.
fn reap_exited() {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn become_subreaper() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::warn!(
                "cannot become a child subreaper: orphaned grandchildren will not be counted"
            );
        }
    }
}

/// Runs `forge track`; returns the exit code to use.
///
/// # Errors
/// A bad configuration (country, PUE, ...), a command that cannot be started (126/127), or a
/// CSV that cannot be written (the measurement is still printed first).
pub fn run(args: &TrackArgs, ui: &mut Ui) -> Result<i32> {
    let config = carbon_config(args)?;
    let program = args.command[0].clone();
    let mut gpu_warnings = Vec::new();
    let gpu = if config.use_nvml {
        gpu_backend(&mut gpu_warnings)
    } else {
        None
    };
    let probe = Arc::new(TreeProbe::new());
    let mut tracker = CarbonTracker::with_parts(config, probe.clone(), gpu)?;
    become_subreaper();
    let child_pid = Arc::new(AtomicI32::new(0));
    let forwarder = Forwarder::install(Arc::clone(&child_pid))?;

    tracker.start()?;
    let child = match Command::new(&program).args(&args.command[1..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = tracker.stop_no_output();
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            };
            return Err(CliError::Spawn {
                program,
                reason: e.to_string(),
                code,
            });
        }
    };
    let pid = child.id() as i32;
    child_pid.store(pid, Ordering::SeqCst);
    // The child is waited for by `wait_for` (waitpid on any pid), not through `Child`.
    drop(child);
    let sampler = probe.spawn_sampler(Duration::from_millis(args.interval_ms));
    let ended = wait_for(pid);
    child_pid.store(0, Ordering::SeqCst);
    reap_exited();
    let still_running = probe.live_descendants().len();
    sampler.stop();
    let mut e = tracker.stop_no_output()?;
    e.warnings.extend(gpu_warnings);
    if still_running > 0 {
        e.warnings.push(format!(
            "{still_running} descendant process(es) still running after the command exited: their CPU time up to now is counted"
        ));
    }
    let ended = ended?;
    let interrupted = forwarder.interrupted();
    drop(forwarder);

    let report = TrackReport {
        command: args.command.clone(),
        exit_code: ended.exit_code(),
        signal: match ended {
            Ended::Signaled(s) => Some(s),
            Ended::Exited(_) => None,
        },
        interrupted,
        processes_seen: probe.processes_seen(),
        peak_rss_bytes: probe.peak_rss_bytes(),
        still_running,
        output: (!args.no_output).then(|| args.output.clone()),
        emissions: e,
    };
    let write = if args.no_output {
        Ok(())
    } else {
        write_row(&args.output, &report.emissions)
    };
    if ui.json {
        ui.json_line(&report)?;
    }
    if !ui.json || write.is_err() {
        ui.eprint(&summary(&report, probe.samples()));
    }
    write?;
    Ok(report.exit_code)
}

fn write_row(path: &std::path::Path, e: &Emissions) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| CliError::Output {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    }
    let notes = forge_carbon::append_csv(path, e).map_err(|err| CliError::Output {
        path: path.to_path_buf(),
        reason: crate::error::one_line(&err),
    })?;
    for n in notes {
        tracing::warn!(file = %path.display(), "{n}");
    }
    Ok(())
}

fn kwh(x: f64) -> String {
    format!("{x:.3e} kWh")
}

/// A mass in kg as g or mg, the way people read small emissions.
fn mass(kg: f64) -> String {
    let g = kg * 1e3;
    if g >= 1000.0 {
        format!("{kg:.3} kg")
    } else if g >= 1.0 {
        format!("{g:.3} g")
    } else {
        format!("{:.3} mg", g * 1e3)
    }
}

/// The command as a shell would show it: arguments with spaces or shell characters single-quoted.
fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The human summary printed on stderr.
pub fn summary(r: &TrackReport, samples: u64) -> String {
    let e = &r.emissions;
    let how = match r.signal {
        Some(s) => format!("was killed by signal {s} (exit code {})", r.exit_code),
        None => format!("exited with code {}", r.exit_code),
    };
    let mut s = format!(
        "forge track: `{}` {how} after {:.2} s{}\n",
        shell_join(&r.command),
        e.duration_s,
        if r.interrupted { " (interrupted)" } else { "" }
    );
    for c in &e.components {
        let kwh_c = match c.component.as_str() {
            "cpu" => e.cpu_energy_kwh,
            "ram" => e.ram_energy_kwh,
            _ => e.gpu_energy_kwh,
        };
        let extra = match (c.component.as_str(), c.method) {
            ("cpu", forge_carbon::EnergyMethod::TdpEstimate) => {
                format!("; {:.2} s CPU time", e.process_cpu_s)
            }
            ("ram", forge_carbon::EnergyMethod::RamModel) => format!(
                "; mean RSS {:.3} GiB of {} process(es), {samples} sample(s)",
                e.ram_process_gb, r.processes_seen
            ),
            _ => String::new(),
        };
        s += &format!(
            "  {:<5} {:>14}  {} ({}): {}{extra}\n",
            c.component,
            kwh(kwh_c),
            c.method,
            c.scope,
            c.detail
        );
    }
    if !e.components.iter().any(|c| c.component == "gpu") {
        s += &format!(
            "  {:<5} {:>14}  not tracked (no NVML GPU{})\n",
            "gpu",
            kwh(0.0),
            if cfg!(feature = "nvml") {
                ""
            } else {
                "; build with --features nvml"
            }
        );
    }
    s += &format!(
        "  {:<5} {:>14}  incl. PUE {} -> {} CO2eq at {:.0} g/kWh ({}, {})\n",
        "total",
        kwh(e.energy_kwh),
        e.pue,
        mass(e.emissions_kg),
        e.carbon_intensity_g_per_kwh,
        e.country_iso,
        e.country_name
    );
    for w in &e.warnings {
        s += &format!("  note: {w}\n");
    }
    match &r.output {
        Some(p) => s += &format!("  row appended to {} (run_id {})\n", p.display(), e.run_id),
        None => s += "  no row written (--no-output)\n",
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masses_read_naturally() {
        assert_eq!(mass(2.5), "2.500 kg");
        assert_eq!(mass(0.0125), "12.500 g");
        assert_eq!(mass(3.0e-6), "3.000 mg");
    }

    #[test]
    fn commands_are_shown_shell_quoted() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shell_join(&v(&["python", "train.py", "--lr=0.1"])),
            "python train.py --lr=0.1"
        );
        assert_eq!(shell_join(&v(&["sh", "-c", "exit 3"])), "sh -c 'exit 3'");
        assert_eq!(shell_join(&v(&["echo", "it's"])), "echo 'it'\\''s'");
    }

    #[test]
    fn signal_exit_codes() {
        assert_eq!(Ended::Signaled(2).exit_code(), 130);
        assert_eq!(Ended::Exited(3).exit_code(), 3);
    }
}
