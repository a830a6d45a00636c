//! `forge sweep --executor slurm`: the sweep's units split into shards, one Slurm array task per
//! shard (`forge sweep FILE --out DIR --shard i/N` with this very binary), submitted with
//! `sbatch --wait`, then checked unit by unit and aggregated here. The script is written by
//! [`forge_linalg::cluster::ArrayScript`], the same writer `cargo xtask demo --executor slurm`
//! uses.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use forge_linalg::cluster::{array_spec, sh_quote, ArrayScript, SlurmOptions};

use super::{aggregate, done, report, shard_units, unit_dir, Sweep, SweepArgs};
use crate::error::{CliError, Result};
use crate::ui::Ui;

fn cluster_err(e: forge_linalg::LinalgError) -> CliError {
    match e {
        forge_linalg::LinalgError::InvalidConfig { .. } => {
            CliError::Usage(crate::error::one_line(&e))
        }
        other => CliError::Linalg(other),
    }
}

fn options(a: &SweepArgs) -> Result<SlurmOptions> {
    let mut o = match &a.slurm_config {
        Some(p) => SlurmOptions::from_file(p).map_err(cluster_err)?,
        None => SlurmOptions::default(),
    };
    if let Some(v) = a.cpus_per_task {
        o.cpus_per_task = v;
    }
    if let Some(v) = &a.mem {
        o.mem.clone_from(v);
    }
    if let Some(v) = &a.time {
        o.time.clone_from(v);
    }
    for (dst, src) in [
        (&mut o.partition, &a.partition),
        (&mut o.gres, &a.gres),
        (&mut o.account, &a.account),
    ] {
        if src.is_some() {
            dst.clone_from(src);
        }
    }
    o.exclusive |= a.exclusive;
    o.validate().map_err(cluster_err)?;
    Ok(o)
}

/// Shard indices with units left, each with the ids of those units.
fn unfinished(sweep: &Sweep, out: &Path, n: usize) -> Result<Vec<(usize, Vec<String>)>> {
    let mut v = Vec::new();
    for i in 1..=n {
        let left: Vec<String> = shard_units(&sweep.units, i, n)?
            .iter()
            .filter(|u| done(out, u).is_none())
            .map(|u| u.id.clone())
            .collect();
        if !left.is_empty() {
            v.push((i, left));
        }
    }
    Ok(v)
}

/// Runs the sweep as a Slurm job array (see the module docs).
///
/// # Errors
/// Bad Slurm options (named), machine-mode tracking without `--exclusive`, sbatch that cannot
/// be run, and failed array tasks (named by index with their log paths) unless
/// `--allow-partial`.
pub fn run(a: &SweepArgs, sweep: &Sweep, ui: &mut Ui) -> Result<i32> {
    let t0 = Instant::now();
    let n = a
        .shards
        .map_or(sweep.units.len(), |s| s as usize)
        .min(sweep.units.len());
    let options = options(a)?;
    let tracking = forge_carbon::CarbonConfig::from_env()?.tracking_mode;
    forge_linalg::cluster::check_tracking_mode(tracking.as_str(), options.exclusive)
        .map_err(cluster_err)?;
    let out = std::path::absolute(&a.out)?;
    let exe = std::env::current_exe()?;
    let q = |p: &Path| sh_quote(&p.to_string_lossy());
    let command = format!(
        "{} --quiet sweep {} --out {} --shard \"$i/{n}\"",
        q(&exe),
        q(&sweep.path),
        q(&out)
    );
    let mut job = ArrayScript {
        options,
        count: n,
        indices: (1..=n).collect(),
        log_dir: out.join("logs"),
        workdir: std::env::current_dir()?,
        env: forge_carbon::config::settings_env(),
        command,
    };
    if a.resume {
        let left = unfinished(sweep, &out, n)?;
        job.indices = left.iter().map(|(i, _)| *i).collect();
        ui.eprint(&format!(
            "resume: {} of {n} shard(s) done; running {}\n",
            n - left.len(),
            if job.indices.is_empty() {
                "none".to_string()
            } else {
                array_spec(&job.indices)
            }
        ));
    }
    if a.dry_run {
        if job.indices.is_empty() {
            ui.eprint("nothing to run\n");
        } else {
            ui.print(&job.script().map_err(cluster_err)?)?;
        }
        return Ok(0);
    }
    if !a.resume {
        // A fresh sweep: no result of an earlier one may stand in for this one's.
        for u in &sweep.units {
            let d = unit_dir(&out, u);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(|e| CliError::Output {
                    path: d.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
    }
    if !job.indices.is_empty() {
        submit(&job, &out, &a.sbatch, ui)?;
    }
    let left = unfinished(sweep, &out, n)?;
    for (i, ids) in &left {
        let log = job.log_path(*i);
        ui.eprint(&format!(
            "array task {i} (shard {i}/{n}) failed: no result for {}; log: {}\n{}\n",
            ids.join(", "),
            log.display(),
            forge_linalg::cluster::log_tail(&log, 15)
        ));
    }
    if !left.is_empty() && !a.allow_partial {
        return Err(CliError::Input(format!(
            "{} of {n} array task(s) failed ({}); logs in {}; rerun only those with --resume",
            left.len(),
            left.iter()
                .map(|(i, _)| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            job.log_dir.display()
        )));
    }
    let r = aggregate(sweep, &out, a.allow_partial)?;
    report(&r, &out, ui)?;
    ui.eprint(&format!(
        "sweep of {} unit(s) in {n} shard(s) finished in {:.1} s\n",
        sweep.units.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(0)
}

/// Writes the script (atomically) and runs `sbatch --parsable --wait` on it. A non-zero exit (a
/// failed task, or a refused submission) is reported, not returned: the unit results say which
/// tasks failed.
fn submit(job: &ArrayScript, out: &Path, sbatch: &str, ui: &Ui) -> Result<()> {
    std::fs::create_dir_all(&job.log_dir).map_err(|e| CliError::Output {
        path: job.log_dir.clone(),
        reason: e.to_string(),
    })?;
    let script_path = out.join("forge-sweep.sbatch");
    forge_linalg::io::write_atomic(&script_path, job.script().map_err(cluster_err)?.as_bytes())?;
    ui.eprint(&format!(
        "submitting {} array task(s) [{}] of {}: {sbatch} --wait {}\n",
        job.indices.len(),
        array_spec(&job.indices),
        job.count,
        script_path.display()
    ));
    let t = Instant::now();
    let o = Command::new(sbatch)
        .args(["--parsable", "--wait"])
        .arg(&script_path)
        .output()
        .map_err(|e| CliError::Spawn {
            program: sbatch.to_string(),
            reason: format!("{e} (is Slurm installed?)"),
            code: crate::error::EXIT_NOT_FOUND,
        })?;
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    ui.eprint(&format!(
        "job {} finished in {:.1} s ({})\n",
        if id.is_empty() { "?" } else { &id },
        t.elapsed().as_secs_f64(),
        o.status
    ));
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if !o.status.success() && !err.is_empty() {
        ui.eprint(&format!("{sbatch} said: {err}\n"));
    }
    Ok(())
}
