//! `forge sweep FILE --out DIR`: user-defined sweeps of `forge finetune` (models x methods x
//! seeds x hyperparameters, [`spec`]), run here one unit after another, one shard of them
//! (`--shard i/N`), or as a Slurm job array (`--executor slurm`, [`slurm`]).
//!
//! Unit `ID` writes its fine-tuning outputs (adapter or checkpoint, `history.json`,
//! `emissions.csv`) to `DIR/units/ID/` and, last and atomically, its result
//! `DIR/units/ID/unit.json` ([`UnitResult`]: the unit, its `forge finetune` arguments, the
//! validation accuracy, energy and CO2). A unit counts as done when that file exists and was
//! written for the same arguments; `--resume` skips the units done. Without `--shard`, the
//! results are aggregated into `DIR/sweep.json` ([`SweepResults`]) and printed as a table;
//! missing units are an error naming them unless `--allow-partial`.

pub mod slurm;
pub mod spec;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::commands::finetune::{self, FinetuneArgs};
use crate::error::{CliError, Result};
use crate::ui::Ui;
pub use spec::{Method, Sweep, SweepFile, Unit};

/// Version of `unit.json` and `sweep.json`.
pub const SWEEP_FORMAT_VERSION: u32 = 1;
/// The result file of a unit, inside its folder.
pub const UNIT_FILE: &str = "unit.json";
/// The aggregate of a sweep, inside its folder.
pub const SWEEP_FILE: &str = "sweep.json";

/// Where a sweep's units run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// In this process, one unit after another.
    #[default]
    Local,
    /// One Slurm array task per shard (`sbatch --wait`), then aggregated here.
    Slurm,
}

/// Arguments of `forge sweep`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge sweep sweep.yml --out runs/sweep
  forge sweep sweep.yml --out runs/sweep --shard 2/4
  forge sweep sweep.yml --out runs/sweep --executor slurm --shards 4 --mem 8G --time 02:00:00 --dry-run
  forge sweep sweep.yml --out runs/sweep --executor slurm --shards 4 --resume

sweep.yml (YAML, or JSON with a .json extension; relative paths are to its folder):
  train: train.tsv
  val: dev.tsv
  models: [models/all-minilm-l6-v2, models/distilbert-base-uncased]
  methods: [full, lora-r4, {lora: {r: 8, alpha: 32}}]
  seeds: [0, 1, 2]
  lr: [5e-5, 1e-4]        # optional axes: lr, epochs, batch_size
  epochs: [2]
  max_length: 64          # optional: max_length, max_rows, text_col, label_col

Each unit writes DIR/units/ID/ (the finetune outputs and unit.json); without --shard the
results are gathered in DIR/sweep.json and printed as a table.")]
pub struct SweepArgs {
    /// The sweep file (YAML or JSON).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The sweep folder: units/ID/ per unit, sweep.json, and for Slurm the script and logs/.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Run only shard INDEX/COUNT of the units (COUNT contiguous blocks, INDEX 1-based) and do
    /// not aggregate.
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
    /// Where the units run: `local` (this process) or `slurm` (a job array of --shards tasks,
    /// submitted with `sbatch --wait`, then aggregated here).
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// With --executor slurm: the number of shards (array tasks) [default: one per unit].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,
    /// Print what would run (local: the units; slurm: the sbatch script) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the units already done (their unit.json exists for the same arguments); with
    /// slurm, submit only the shards with units left.
    #[arg(long)]
    pub resume: bool,
    /// Write sweep.json even when some units have no result (they are listed as missing).
    #[arg(long)]
    pub allow_partial: bool,
    /// Slurm task resources from a JSON file (job_name, cpus_per_task, mem, time, partition,
    /// gres, account, exclusive, extra); the options below override it.
    #[arg(long, value_name = "FILE")]
    pub slurm_config: Option<PathBuf>,
    /// Slurm: CPUs per array task [default: 1].
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Slurm: memory per array task, e.g. 2G [default: 1G].
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm: time limit per array task, e.g. 00:30:00 [default: 00:30:00].
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: partition [default: the cluster's].
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: generic resources per task, e.g. gpu:1.
    #[arg(long)]
    pub gres: Option<String>,
    /// Slurm: account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm: one node per task (required for machine-mode carbon tracking).
    #[arg(long)]
    pub exclusive: bool,
    /// The sbatch program (tests use a stand-in).
    #[arg(long, env = "FORGE_SBATCH", default_value = "sbatch", hide = true)]
    pub sbatch: String,
}

/// The result of one unit, `DIR/units/ID/unit.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitResult {
    /// [`SWEEP_FORMAT_VERSION`].
    pub format: u32,
    /// The unit (its `args` are the `forge finetune` arguments, without `--output`).
    pub unit: Unit,
    /// The output folder.
    pub output: PathBuf,
    /// `"lora"` or `"full"`.
    pub mode: String,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Training loss of the last epoch.
    pub final_train_loss: Option<f64>,
    /// Validation accuracy after the last evaluated epoch.
    pub val_accuracy: Option<f64>,
    /// Energy, kWh.
    pub energy_kwh: f64,
    /// Emissions, kg CO2-eq.
    pub emissions_kg: f64,
    /// Wall time of the unit, seconds.
    pub wall_s: f64,
    /// The host it ran on.
    pub host: String,
}

/// `DIR/sweep.json`: every unit's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepResults {
    /// [`SWEEP_FORMAT_VERSION`].
    pub format: u32,
    /// The sweep file.
    pub sweep_file: PathBuf,
    /// Units in the sweep.
    pub units_total: usize,
    /// Ids of the units without a result (only with `--allow-partial`).
    pub missing: Vec<String>,
    /// Energy of the units done, kWh.
    pub energy_kwh: f64,
    /// Emissions of the units done, kg CO2-eq.
    pub emissions_kg: f64,
    /// The units' results, in sweep order.
    pub units: Vec<UnitResult>,
}

/// `DIR/units/ID`.
pub fn unit_dir(out: &Path, u: &Unit) -> PathBuf {
    out.join("units").join(&u.id)
}

/// Shard `INDEX/COUNT` parsed.
///
/// # Errors
/// [`CliError::Usage`] naming the value.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    forge_linalg::cluster::parse_shard(s)
        .map_err(|why| CliError::Usage(format!("--shard {s:?}: {why}")))
}

/// The units of shard `index/count` (contiguous blocks, [`forge_linalg::cluster::shard_range`]).
///
/// # Errors
/// [`CliError::Usage`] for an index outside `1..=count`.
pub fn shard_units(units: &[Unit], index: usize, count: usize) -> Result<&[Unit]> {
    let r = forge_linalg::cluster::shard_range(units.len(), index, count)
        .map_err(|e| CliError::Usage(crate::error::one_line(&e)))?;
    Ok(&units[r])
}

/// The result of `u` in `out`, if it exists and was written for the same arguments.
pub fn done(out: &Path, u: &Unit) -> Option<UnitResult> {
    let text = std::fs::read_to_string(unit_dir(out, u).join(UNIT_FILE)).ok()?;
    let r: UnitResult = serde_json::from_str(&text).ok()?;
    (r.format == SWEEP_FORMAT_VERSION && r.unit.args == u.args).then_some(r)
}

/// `FinetuneArgs` of a unit, through clap so that every default is finetune's own.
fn finetune_args(u: &Unit, output: &Path) -> Result<FinetuneArgs> {
    #[derive(Parser)]
    struct One {
        #[command(flatten)]
        a: FinetuneArgs,
    }
    let mut argv = vec!["forge-finetune".to_string()];
    argv.extend(u.args.iter().cloned());
    argv.extend(["--output".into(), output.to_string_lossy().into_owned()]);
    One::try_parse_from(argv).map(|o| o.a).map_err(|e| {
        CliError::Usage(format!(
            "unit {}: {}",
            u.id,
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs one unit: removes its folder, fine-tunes, writes `unit.json` last.
fn run_unit(out: &Path, u: &Unit, ui: &mut Ui) -> Result<UnitResult> {
    let dir = unit_dir(out, u);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| CliError::Output {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
    }
    let a = finetune_args(u, &dir)?;
    let t0 = Instant::now();
    let rep = finetune::execute(&a, ui)?;
    let r = UnitResult {
        format: SWEEP_FORMAT_VERSION,
        unit: u.clone(),
        output: dir.clone(),
        mode: rep.mode.to_string(),
        trainable_parameters: rep.trainable_parameters,
        epochs_run: rep.history.epochs.len(),
        final_train_loss: rep.history.epochs.last().map(|e| e.train_loss),
        val_accuracy: rep.val_accuracy,
        energy_kwh: rep.energy_kwh,
        emissions_kg: rep.emissions_kg,
        wall_s: t0.elapsed().as_secs_f64(),
        host: host(),
    };
    forge_linalg::io::write_atomic(
        &dir.join(UNIT_FILE),
        serde_json::to_string_pretty(&r)?.as_bytes(),
    )?;
    Ok(r)
}

/// Runs `units` here one after another (skipping those done with `resume`); a failed unit is
/// reported and the next one runs. Returns the ids of the failed units with why.
fn run_units(
    out: &Path,
    units: &[Unit],
    total: usize,
    resume: bool,
    ui: &mut Ui,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for u in units {
        let tag = format!("[{}/{total}] {}", u.index + 1, u.id);
        if resume && done(out, u).is_some() {
            ui.eprint(&format!("{tag}: done already, skipped (--resume)\n"));
            continue;
        }
        ui.eprint(&format!("{tag}: running\n"));
        match run_unit(out, u, ui) {
            Ok(r) => ui.eprint(&format!(
                "{tag}: done in {:.1} s{}, {:.3e} kWh, {:.3e} kg CO2eq\n",
                r.wall_s,
                r.val_accuracy
                    .map(|v| format!(", val accuracy {v:.4}"))
                    .unwrap_or_default(),
                r.energy_kwh,
                r.emissions_kg
            )),
            Err(e) => {
                let why = e.one_line();
                ui.eprint(&format!("{tag}: failed: {why}\n"));
                failed.push((u.id.clone(), why));
            }
        }
    }
    failed
}

/// Gathers every unit's result into `DIR/sweep.json` (atomically).
///
/// # Errors
/// [`CliError::Input`] naming the missing units unless `allow_partial`; write errors.
pub fn aggregate(sweep: &Sweep, out: &Path, allow_partial: bool) -> Result<SweepResults> {
    let mut units = Vec::new();
    let mut missing = Vec::new();
    for u in &sweep.units {
        match done(out, u) {
            Some(mut r) => {
                r.unit.index = u.index;
                units.push(r);
            }
            None => missing.push(u.id.clone()),
        }
    }
    if !missing.is_empty() && !allow_partial {
        return Err(CliError::Input(format!(
            "sweep {}: {} of {} unit(s) have no result: {}; run them (--resume) or pass --allow-partial",
            out.display(),
            missing.len(),
            sweep.units.len(),
            missing.join(", ")
        )));
    }
    let res = SweepResults {
        format: SWEEP_FORMAT_VERSION,
        sweep_file: sweep.path.clone(),
        units_total: sweep.units.len(),
        missing,
        energy_kwh: units.iter().map(|r| r.energy_kwh).sum(),
        emissions_kg: units.iter().map(|r| r.emissions_kg).sum(),
        units,
    };
    forge_linalg::io::write_atomic(
        &out.join(SWEEP_FILE),
        serde_json::to_string_pretty(&res)?.as_bytes(),
    )?;
    Ok(res)
}

/// The results as a table.
pub fn table(r: &SweepResults) -> String {
    let w = r
        .units
        .iter()
        .map(|u| u.unit.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let mut s = format!(
        "{:<w$}  {:>9}  {:>10}  {:>8}  {:>10}  {:>10}\n",
        "id", "val acc", "train loss", "wall s", "kWh", "kg CO2eq"
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    for u in &r.units {
        s += &format!(
            "{:<w$}  {:>9}  {:>10}  {:>8.1}  {:>10.3e}  {:>10.3e}\n",
            u.unit.id,
            opt(u.val_accuracy),
            opt(u.final_train_loss),
            u.wall_s,
            u.energy_kwh,
            u.emissions_kg
        );
    }
    s += &format!(
        "{} of {} unit(s){}; total {:.3e} kWh, {:.3e} kg CO2eq\n",
        r.units.len(),
        r.units_total,
        if r.missing.is_empty() {
            String::new()
        } else {
            format!(" (missing: {})", r.missing.join(", "))
        },
        r.energy_kwh,
        r.emissions_kg
    );
    s
}

/// Prints the aggregate (table or `--json`).
fn report(r: &SweepResults, out: &Path, ui: &mut Ui) -> Result<()> {
    if ui.json {
        ui.json_line(r)
    } else {
        ui.print(&table(r))?;
        ui.eprint(&format!("written to {}\n", out.join(SWEEP_FILE).display()));
        Ok(())
    }
}

/// Runs `forge sweep`.
///
/// # Errors
/// Bad sweep file or options ([`Sweep::load`], `--shard`), failed units (named, after every
/// other unit ran), missing units at aggregation, Slurm errors ([`slurm::run`]).
pub fn run(a: &SweepArgs, ui: &mut Ui) -> Result<i32> {
    let sweep = Sweep::load(&a.file)?;
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    if a.executor == Executor::Slurm {
        if shard.is_some() {
            return Err(CliError::Usage(
                "--shard runs one shard here; it does not go with --executor slurm".into(),
            ));
        }
        return slurm::run(a, &sweep, ui);
    }
    let units = match shard {
        Some((i, n)) => shard_units(&sweep.units, i, n)?,
        None => &sweep.units[..],
    };
    if a.dry_run {
        for u in units {
            ui.print(&format!(
                "{}\tforge finetune {} --output {}\n",
                u.id,
                u.args
                    .iter()
                    .map(|x| forge_linalg::cluster::sh_quote(x))
                    .collect::<Vec<_>>()
                    .join(" "),
                forge_linalg::cluster::sh_quote(&unit_dir(&a.out, u).to_string_lossy())
            ))?;
        }
        return Ok(0);
    }
    let t0 = Instant::now();
    let failed = run_units(&a.out, units, sweep.units.len(), a.resume, ui);
    if !failed.is_empty() {
        return Err(CliError::Input(format!(
            "{} unit(s) failed: {}; rerun them with --resume",
            failed.len(),
            failed
                .iter()
                .map(|(id, why)| format!("{id} ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    if let Some((i, n)) = shard {
        ui.eprint(&format!(
            "shard {i}/{n}: {} unit(s) in {:.1} s\n",
            units.len(),
            t0.elapsed().as_secs_f64()
        ));
        return Ok(0);
    }
    let r = aggregate(&sweep, &a.out, a.allow_partial)?;
    report(&r, &a.out, ui)?;
    Ok(0)
}
