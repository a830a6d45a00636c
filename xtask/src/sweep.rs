//! Sweeps beyond one process: `demo --shard i/N` runs one shard here and writes a results
//! shard, `demo --executor slurm` runs every shard as a task of a Slurm job array and
//! aggregates them, `aggregate` merges shard files. The work lives in `forge_bench::shard` and
//! `forge_bench::slurm`; this module parses options, runs `sbatch` and prints.

use crate::{last_results_path, print_tables, progress_bar, project_root, save, Bars, DemoArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use forge_bench::schema::{Measurement, ResultsFile, SweepInfo};
use forge_bench::shard::{self, ShardFile, ShardSpec};
use forge_bench::slurm::{ArrayJob, SlurmOptions};
use forge_bench::{Registry, RunContext, RunPlan};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where a sweep's shards run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Executor {
    /// In this process (every unit, or one `--shard`).
    #[default]
    Local,
    /// One Slurm array task per shard (`sbatch --wait`), then aggregated here.
    Slurm,
}

/// The sweep options of `demo`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Run only shard INDEX/COUNT of the work units (scenario x strategy x seed, split into
    /// COUNT contiguous blocks; INDEX is 1-based, 1..=COUNT) and write a results shard instead
    /// of the tables (merge the shards with `cargo xtask aggregate`).
    #[arg(long, value_name = "INDEX/COUNT", conflicts_with_all = ["json", "save_json"])]
    pub(crate) shard: Option<String>,
    /// Where `--shard` writes its results shard [default:
    /// target/forge-results/shards/shard-INDEX-of-COUNT.json].
    #[arg(long, value_name = "PATH", requires = "shard")]
    pub(crate) shard_out: Option<PathBuf>,
    /// Where the sweep runs: `local` (this process) or `slurm` (a job array of --shards tasks,
    /// submitted with `sbatch --wait`, then aggregated).
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub(crate) executor: Executor,
    /// With --executor slurm: the number of shards (array tasks).
    #[arg(long, default_value_t = 4)]
    pub(crate) shards: usize,
    /// With --executor slurm: the sweep folder (sbatch script, shards, logs/).
    #[arg(long, default_value = "target/forge-results/sweep")]
    pub(crate) sweep_dir: PathBuf,
    /// With --executor slurm: print the sbatch script and exit without submitting.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --executor slurm: keep the valid shards already in the sweep folder and run only
    /// the missing (or failed) ones.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Slurm task resources from a JSON file (job_name, cpus_per_task, mem, time, partition,
    /// gres, account, exclusive, extra); the options below override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) slurm_config: Option<PathBuf>,
    /// Slurm: CPUs per array task [default: 1].
    #[arg(long)]
    pub(crate) cpus_per_task: Option<u32>,
    /// Slurm: memory per array task, e.g. 2G [default: 1G].
    #[arg(long)]
    pub(crate) mem: Option<String>,
    /// Slurm: time limit per array task, e.g. 00:30:00 [default: 00:30:00].
    #[arg(long)]
    pub(crate) time: Option<String>,
    /// Slurm: partition [default: the cluster's].
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// Slurm: generic resources per task, e.g. gpu:1.
    #[arg(long)]
    pub(crate) gres: Option<String>,
    /// Slurm: one node per task (required for machine-mode carbon tracking).
    #[arg(long)]
    pub(crate) exclusive: bool,
    /// The sbatch program (tests use a stand-in).
    #[arg(long, env = "FORGE_SBATCH", default_value = "sbatch", hide = true)]
    pub(crate) sbatch: String,
}

/// `cargo xtask aggregate`.
#[derive(Debug, Args)]
pub(crate) struct AggregateArgs {
    /// Results shards, or folders holding `shard-*-of-*.json` files.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where to write the merged results file (validated, written atomically).
    #[arg(short, long)]
    out: PathBuf,
    /// Also check that the merged results equal this results file (e.g. a single-process run
    /// of the same plan) in every field except timing and energy; exit 1 naming the differences.
    #[arg(long, value_name = "RESULTS")]
    check_equal: Option<PathBuf>,
    /// Relative tolerance of --check-equal for numbers (0 = bit-identical).
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,
    /// Print the tables of the merged results.
    #[arg(long)]
    tables: bool,
}

/// The code version recorded in every shard: `git <commit>[-dirty]` (tracked files changed),
/// or `forge-bench <version>` outside a git checkout.
pub(crate) fn code_version() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(project_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("git {c}{}", if dirty { "-dirty" } else { "" })
        }
        _ => forge_bench::runner::generator(),
    }
}

fn default_shard_dir() -> PathBuf {
    last_results_path()
        .parent()
        .map(|p| p.join("shards"))
        .unwrap_or_else(|| PathBuf::from("shards"))
}

/// `1.234e-5 kWh, 5.678e-6 kg CO2e, 12.3 s`.
fn carbon_words(m: &Measurement) -> String {
    format!(
        "{:.3e} kWh, {:.3e} kg CO2e, {:.1} task-s of wall time",
        m.total_kwh, m.co2_kg, m.wall_time_s
    )
}

/// `demo --shard i/N`: runs one shard here, measured as a task, and writes its results shard.
pub(crate) fn shard(
    a: &DemoArgs,
    registry: &Registry,
    plan: &RunPlan,
    ctx: &RunContext,
    spec: &str,
    quiet: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let spec: ShardSpec = spec.parse()?;
    let opts = shard::ShardOptions {
        spec,
        code_version: code_version(),
        tracking_mode: forge_bench::carbon::tracking_mode_from_env()?,
    };
    // A second tracker: the per-window meter of `ctx` runs inside the task's window.
    let task_meter = forge_bench::carbon::CarbonMeter::from_env()?;
    let mut obs = Bars {
        bar: progress_bar(quiet)?,
    };
    let s = shard::run_shard(registry, plan, ctx, &opts, Some(&task_meter), &mut obs)?;
    let path = a
        .sweep
        .shard_out
        .clone()
        .unwrap_or_else(|| default_shard_dir().join(spec.file_name()));
    shard::write_shard(&path, &s)?;
    let task = s
        .provenance
        .task
        .as_ref()
        .map(carbon_words)
        .unwrap_or_else(|| "not measured".into());
    eprintln!(
        "shard {spec}: {} unit(s) on {} in {:.1} s (this task: {task}); written to {}",
        s.units.len(),
        s.provenance.host,
        t0.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(())
}

fn sweep_summary(sw: &SweepInfo, wall_s: f64) {
    eprintln!(
        "sweep: {} shard(s) on {} node(s), {:.1} s from first start to last end; carbon summed over tasks ({} mode): {}",
        sw.shards.len(),
        sw.nodes.len(),
        wall_s,
        sw.tracking_mode,
        carbon_words(&sw.total)
    );
    for n in &sw.nodes {
        eprintln!(
            "  node {}: {} task(s), {}",
            n.host,
            n.tasks,
            carbon_words(&n.total)
        );
    }
    if sw.extra_trials > 0 {
        eprintln!(
            "  {} trial(s) were split across shards: their set-up ran in each (in the task totals), their source cost is counted once",
            sw.extra_trials
        );
    }
}

/// Reads the shard files in `paths` (folders expanded to their `shard-*-of-*.json`).
fn read_shards(paths: &[PathBuf]) -> Result<Shards> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(shard::shard_files_in(p)?);
        } else {
            files.push(p.clone());
        }
    }
    files
        .into_iter()
        .map(|p| {
            let s = shard::read_shard(&p)?;
            Ok((p, s))
        })
        .collect()
}

/// `cargo xtask aggregate`.
pub(crate) fn aggregate(a: AggregateArgs, verbose: bool) -> Result<()> {
    if !a.tolerance.is_finite() || a.tolerance < 0.0 {
        bail!(
            "--tolerance must be a finite number >= 0, got {}",
            a.tolerance
        );
    }
    let shards = read_shards(&a.shards)?;
    let registry = forge_bench::registry()?;
    let results = shard::aggregate(&registry, &shards)?;
    forge_bench::io::write_results(&a.out, &results)?;
    if a.tables {
        print_tables(&results, verbose);
    }
    eprintln!(
        "aggregated {} shard(s), {} record(s) -> {}",
        shards.len(),
        results.records.len(),
        a.out.display()
    );
    if let Some(sw) = &results.sweep {
        sweep_summary(sw, results.run.total_wall_s);
    }
    if let Some(reference) = &a.check_equal {
        let r = forge_bench::io::read_results(reference)?;
        forge_bench::compare::check_equal(&r, &results, a.tolerance)
            .with_context(|| format!("{} vs {}", reference.display(), a.out.display()))?;
        eprintln!(
            "equal to {} in every field except timing and energy",
            reference.display()
        );
    }
    Ok(())
}

fn slurm_options(sw: &SweepArgs) -> Result<SlurmOptions> {
    let mut o = match &sw.slurm_config {
        Some(p) => SlurmOptions::from_file(p)?,
        None => SlurmOptions::default(),
    };
    if let Some(v) = sw.cpus_per_task {
        o.cpus_per_task = v;
    }
    if let Some(v) = &sw.mem {
        o.mem.clone_from(v);
    }
    if let Some(v) = &sw.time {
        o.time.clone_from(v);
    }
    if sw.partition.is_some() {
        o.partition.clone_from(&sw.partition);
    }
    if sw.gres.is_some() {
        o.gres.clone_from(&sw.gres);
    }
    o.exclusive |= sw.exclusive;
    o.validate()?;
    Ok(o)
}

/// The `demo` arguments every array task repeats (the plan and its data), paths made absolute.
fn task_args(a: &DemoArgs) -> Result<Vec<String>> {
    let abs = |p: &Path| -> Result<String> {
        Ok(std::path::absolute(p)
            .with_context(|| format!("absolute path of {}", p.display()))?
            .to_string_lossy()
            .into_owned())
    };
    let mut v = vec!["demo".to_string()];
    if a.quick {
        v.push("--quick".into());
    }
    if a.full {
        v.push("--full".into());
    }
    if let Some(n) = a.seeds {
        v.extend(["--seeds".into(), n.to_string()]);
    }
    for s in &a.scenarios {
        v.extend(["--scenario".into(), s.clone()]);
    }
    if let Some(d) = &a.data_dir {
        v.extend(["--data-dir".into(), abs(d)?]);
    }
    if let Some(m) = &a.model {
        let m = if Path::new(m).exists() {
            abs(Path::new(m))?
        } else {
            m.clone()
        };
        v.extend(["--model".into(), m]);
    }
    if let Some(t) = &a.text_data_dir {
        v.extend(["--text-data-dir".into(), abs(t)?]);
    }
    v.push("--quiet".into());
    Ok(v)
}

/// Shard files with their paths.
type Shards = Vec<(PathBuf, ShardFile)>;
/// Shard indices that have no valid shard, with the reason.
type Failed = Vec<(usize, String)>;

/// The valid shards of this sweep in `job.dir`, and why each other index is not (missing,
/// unreadable, or from another sweep).
fn collect(job: &ArrayJob, code: &str, run: &forge_bench::schema::RunInfo) -> (Shards, Failed) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=job.count {
        let p = job.shard_path(i);
        if !p.exists() {
            bad.push((i, "wrote no results shard".to_string()));
            continue;
        }
        match shard::read_shard(&p) {
            Err(e) => bad.push((i, format!("left an unreadable shard ({e})"))),
            Ok(s) => {
                let pv = &s.provenance;
                let why = if pv.code_version != code {
                    Some(format!("code version {} (now {code})", pv.code_version))
                } else if pv.shard
                    != (ShardSpec {
                        index: i,
                        count: job.count,
                    })
                {
                    Some(format!("it is shard {}", pv.shard))
                } else if s.run.mode != run.mode
                    || s.run.seeds != run.seeds
                    || s.run.scenarios != run.scenarios
                {
                    Some("another plan (mode, seeds or scenarios)".to_string())
                } else {
                    None
                };
                match why {
                    Some(w) => bad.push((i, format!("left a shard of another sweep: {w}"))),
                    None => ok.push((p, s)),
                }
            }
        }
    }
    (ok, bad)
}

/// `demo --executor slurm`: one array task per shard through `sbatch --wait`, then aggregate.
pub(crate) fn slurm(
    a: &DemoArgs,
    registry: &Registry,
    plan: &RunPlan,
    ctx: &RunContext,
    verbose: bool,
) -> Result<()> {
    let t0 = Instant::now();
    let sw = &a.sweep;
    let n = sw.shards;
    let spec = ShardSpec::new(n, n)?;
    let resolved = forge_bench::runner::resolve(registry, plan, ctx)?;
    shard::partition(&resolved.atoms, spec)?;
    let options = slurm_options(sw)?;
    let tracking = forge_bench::carbon::tracking_mode_from_env()?;
    forge_bench::slurm::check_tracking_mode(&tracking, options.exclusive)?;
    let run = forge_bench::schema::RunInfo {
        mode: plan.mode.name().to_string(),
        seeds: plan.seeds.clone(),
        scenarios: resolved
            .scenarios
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        ..Default::default()
    };
    let dir = std::path::absolute(&sw.sweep_dir)
        .with_context(|| format!("sweep folder {}", sw.sweep_dir.display()))?;
    let code = code_version();
    let mut job = ArrayJob {
        options,
        count: n,
        indices: (1..=n).collect(),
        dir: dir.clone(),
        workdir: std::env::current_dir().context("current folder")?,
        binary: std::env::current_exe().context("path of this xtask binary")?,
        args: task_args(a)?,
        env: forge_carbon::config::settings_env(),
    };
    if sw.dry_run {
        out!("{}", job.script()?);
        return Ok(());
    }
    select_indices(&mut job, &code, &run, sw.resume)?;
    if !job.indices.is_empty() {
        submit(&job, &sw.sbatch)?;
    }
    let (shards, bad) = collect(&job, &code, &run);
    if !bad.is_empty() {
        return Err(failures(&job, &bad));
    }
    let results: ResultsFile = shard::aggregate(registry, &shards)?;
    if a.json {
        forge_bench::validate::validate(&results)?;
        out!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_tables(&results, verbose);
    }
    save(&results, a.save_json.as_ref())?;
    if let Some(swi) = &results.sweep {
        sweep_summary(swi, results.run.total_wall_s);
    }
    eprintln!(
        "demo --{} --executor slurm finished in {:.1} s ({} shard(s) in {})",
        plan.mode.name(),
        t0.elapsed().as_secs_f64(),
        n,
        dir.display()
    );
    Ok(())
}

/// Which shards to run: all of them (deleting the shard files of an earlier sweep in the
/// folder), or with `resume` only those without a valid shard (deleting stale ones).
fn select_indices(
    job: &mut ArrayJob,
    code: &str,
    run: &forge_bench::schema::RunInfo,
    resume: bool,
) -> Result<()> {
    let n = job.count;
    if !resume {
        // A fresh sweep: no shard of an earlier one may be taken for this one's.
        if job.dir.is_dir() {
            for p in shard::shard_files_in(&job.dir)? {
                std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            }
        }
        return Ok(());
    }
    let (ok, bad) = collect(job, code, run);
    for (i, why) in &bad {
        let p = job.shard_path(*i);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?;
            eprintln!("resume: shard {i}/{n} {why}; rerunning it");
        }
    }
    job.indices = bad.iter().map(|(i, _)| *i).collect();
    eprintln!(
        "resume: {} of {n} shard(s) already done; running {}",
        ok.len(),
        if job.indices.is_empty() {
            "none".to_string()
        } else {
            forge_bench::slurm::array_spec(&job.indices)
        }
    );
    Ok(())
}

/// Writes the script (atomically) and runs `sbatch --parsable --wait` on it. A non-zero exit
/// (a failed task, or a refused submission) is reported, not returned: the shards say which
/// tasks failed.
fn submit(job: &ArrayJob, sbatch: &str) -> Result<()> {
    let logs = job.dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let script_path = job.dir.join("forge-sweep.sbatch");
    forge_bench::io::write_atomic(&script_path, job.script()?.as_bytes())?;
    eprintln!(
        "submitting {} array task(s) [{}] of {}: {sbatch} --wait {}",
        job.indices.len(),
        forge_bench::slurm::array_spec(&job.indices),
        job.count,
        script_path.display()
    );
    let t_submit = Instant::now();
    let out = Command::new(sbatch)
        .args(["--parsable", "--wait"])
        .arg(&script_path)
        .output()
        .with_context(|| format!("run {sbatch} (is Slurm installed?)"))?;
    let job_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    eprintln!(
        "job {} finished in {:.1} s ({})",
        if job_id.is_empty() { "?" } else { &job_id },
        t_submit.elapsed().as_secs_f64(),
        out.status
    );
    if !out.status.success() && !err.is_empty() {
        eprintln!("{sbatch} said: {err}");
    }
    Ok(())
}

/// Prints each failed task with its log's path and last lines; the error to return.
fn failures(job: &ArrayJob, bad: &[(usize, String)]) -> anyhow::Error {
    let n = job.count;
    for (i, why) in bad {
        let log = job.log_path(*i);
        eprintln!(
            "array task {i} (shard {i}/{n}) failed: it {why}; log: {}\n{}",
            log.display(),
            forge_bench::slurm::log_tail(&log, 15)
        );
    }
    anyhow::anyhow!(
        "{} of {n} array task(s) failed ({}); rerun only those with --resume",
        bad.len(),
        bad.iter()
            .map(|(i, _)| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
