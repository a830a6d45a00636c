//! Sweeps beyond one process: work units split into shards, results shards, and their
//! aggregation into exactly the [`ResultsFile`](crate::ResultsFile) a single run writes.
//!
//! A plan's work units are its scenario x seed x strategy triples in canonical order (scenario,
//! then seed, then the scenario's strategy order; [`runner::units_of`]). [`partition`] gives
//! shard `i` of `N` (1-based, as Slurm array indices) a contiguous block of them, sizes
//! differing by at most one. Contiguous blocks keep most scenario x seed trials inside one
//! shard: a trial's set-up (data loading, the source fit) is shared by its strategies, and a
//! trial split across shards is built once per shard. A trial's own outputs (source cost,
//! convergence curves, gate decision) are produced only by the shard holding its BASELINE unit
//! ([`runner::execute`]), so nothing is recorded twice; [`SweepInfo::extra_trials`](crate::schema::SweepInfo::extra_trials) counts the
//! rebuilt ones.
//!
//! [`run_shard`] executes one shard and returns a [`ShardFile`]: the raw records plus the
//! provenance (host, shard, units, start and end, carbon settings, code version, mode, seeds,
//! Slurm job). [`aggregate`] checks that a set of shard files belongs to one sweep (same code
//! version, mode, seeds, scenarios and carbon settings; every unit exactly once) and finalises
//! them with [`runner::finalize`], the same code a single run uses.
//! [`crate::compare::check_equal`] compares two results files ignoring timing and energy.
//!
//! # Carbon
//! Each task measures its own process ([`Provenance::task`]); the aggregate sums the tasks and
//! records per-node totals ([`SweepInfo`](crate::schema::SweepInfo)). Process-mode measurements of different processes
//! are disjoint, so summing tasks that shared a node counts nothing twice. Whole-machine
//! measurements of tasks that overlapped in time on one node would each include the others:
//! [`aggregate`] refuses them ([`BenchError::SharedNodeMachineMode`]).

use crate::error::{BenchError, Result};
use crate::runner::{self, Observer, RawRun, RunPlan, WorkUnit};
use crate::scenario::{Meter, Registry, RunContext};
use crate::schema::{CarbonSettings, MachineInfo, Measurement, RunInfo};
use std::path::{Path, PathBuf};

pub use crate::aggregate::{aggregate, CARBON_RULE};

/// Version of the shard file format ([`ShardFile`]).
pub const SHARD_FORMAT_VERSION: u32 = 1;

/// Shard `index` of `count`, 1-based (`--shard 2/4`), as Slurm numbers array tasks `1-N`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ShardSpec {
    /// 1-based index, `1..=count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl ShardSpec {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`BenchError::InvalidShard`] unless `1 <= index <= count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        let spec = format!("{index}/{count}");
        if count == 0 {
            return Err(BenchError::InvalidShard {
                spec,
                reason: "the number of shards must be at least 1".into(),
            });
        }
        if index == 0 || index > count {
            return Err(BenchError::InvalidShard {
                spec,
                reason: format!("the index must be between 1 and {count} (shards are 1-based)"),
            });
        }
        Ok(Self { index, count })
    }

    /// The one shard of an unsharded run (`1/1`).
    pub fn whole() -> Self {
        Self { index: 1, count: 1 }
    }

    /// The file name of this shard's results in a sweep folder: `shard-<i>-of-<N>.json`.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}.json", self.index, self.count)
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for ShardSpec {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| BenchError::InvalidShard {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        let (i, n) = forge_linalg::cluster::parse_shard(s).map_err(|r| bad(&r))?;
        Self::new(i, n).map_err(|e| match e {
            BenchError::InvalidShard { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// The units of shard `spec`: the `spec.index`-th of `spec.count` contiguous blocks of
/// `atoms` (the indivisible pieces of a plan, [`runner::atoms_of`]: single units, or whole
/// trials of a scenario that needs them whole), flattened. Block sizes differ by at most one
/// piece; over `1..=count` the blocks cover every unit exactly once, in order.
///
/// # Errors
/// [`BenchError::InvalidShard`] if there are more shards than pieces (a shard would be empty)
/// or `spec` is not `1 <= index <= count`.
pub fn partition(atoms: &[Vec<WorkUnit>], spec: ShardSpec) -> Result<Vec<WorkUnit>> {
    // The fields are public (and deserialised): check them again.
    let spec = ShardSpec::new(spec.index, spec.count)?;
    let n = atoms.len();
    if spec.count > n {
        return Err(BenchError::InvalidShard {
            spec: spec.to_string(),
            reason: format!(
                "{} shards for {n} indivisible piece(s) of work ({} unit(s)) would leave shards empty; use at most {n}",
                spec.count,
                atoms.iter().map(Vec::len).sum::<usize>()
            ),
        });
    }
    let lo = (spec.index - 1) * n / spec.count;
    let hi = spec.index * n / spec.count;
    Ok(atoms[lo..hi].concat())
}

/// The Slurm job a shard ran in, from the task's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlurmTask {
    /// `SLURM_ARRAY_JOB_ID` (else `SLURM_JOB_ID`).
    pub job_id: String,
    /// `SLURM_ARRAY_TASK_ID`, if an array task.
    pub array_task_id: Option<String>,
    /// `SLURMD_NODENAME`.
    pub node: Option<String>,
}

impl SlurmTask {
    /// The Slurm job of this process, if it runs under Slurm.
    pub fn from_env() -> Option<Self> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let job_id = get("SLURM_ARRAY_JOB_ID").or_else(|| get("SLURM_JOB_ID"))?;
        Some(Self {
            job_id,
            array_task_id: get("SLURM_ARRAY_TASK_ID"),
            node: get("SLURMD_NODENAME"),
        })
    }

    /// `<job>_<task>` (Slurm's own notation), or the job id.
    pub fn label(&self) -> String {
        match &self.array_task_id {
            Some(t) => format!("{}_{t}", self.job_id),
            None => self.job_id.clone(),
        }
    }
}

/// Where, when and by what code a shard was produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Which shard.
    pub shard: ShardSpec,
    /// Host name of the machine (the Slurm node name when under Slurm).
    pub host: String,
    /// The code that ran it: a git commit (with `-dirty` for local changes) or the crate version.
    pub code_version: String,
    /// `forge-bench <version>`.
    pub generator: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// End, seconds since the Unix epoch.
    pub finished_unix_s: f64,
    /// forge-carbon tracking mode of the task measurement (`process` or `machine`).
    pub tracking_mode: String,
    /// The Slurm job, when run by Slurm.
    pub slurm: Option<SlurmTask>,
    /// The whole task's measurement (every unit, trial set-up and the convergence/gate work),
    /// if a task meter was given.
    pub task: Option<Measurement>,
}

/// A results shard: what one shard of a sweep ran and produced, before aggregation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardFile {
    /// [`SHARD_FORMAT_VERSION`].
    pub shard_format: u32,
    /// Where, when, by what.
    pub provenance: Provenance,
    /// The sweep's plan as this shard resolved it (`total_wall_s` is this shard's).
    pub run: RunInfo,
    /// The machine.
    pub machine: MachineInfo,
    /// The carbon settings of its measurements.
    pub carbon: CarbonSettings,
    /// The work units this shard ran, in canonical order.
    pub units: Vec<WorkUnit>,
    /// What they produced.
    pub raw: RawRun,
}

/// What a shard needs besides the plan.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Which shard.
    pub spec: ShardSpec,
    /// The code version to record ([`Provenance::code_version`]).
    pub code_version: String,
    /// The tracking mode of the task meter (`process` or `machine`).
    pub tracking_mode: String,
}

/// The host name: `SLURMD_NODENAME` under Slurm, else the kernel's host name.
pub fn hostname() -> String {
    std::env::var("SLURMD_NODENAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".into())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs shard `opts.spec` of `plan`: resolves the plan, takes its [`partition`], executes those
/// units (measuring the whole task with `task_meter` when given, a meter separate from the
/// per-window `ctx.meter`) and returns the shard file.
///
/// # Errors
/// As [`runner::resolve`] and [`runner::execute`]; [`BenchError::InvalidShard`] for more shards
/// than units; the task meter's errors.
pub fn run_shard(
    registry: &Registry,
    plan: &RunPlan,
    ctx: &RunContext,
    opts: &ShardOptions,
    task_meter: Option<&dyn Meter>,
    observer: &mut dyn Observer,
) -> Result<ShardFile> {
    let started = unix_now();
    let t0 = std::time::Instant::now();
    let resolved = runner::resolve(registry, plan, ctx)?;
    let units = partition(&resolved.atoms, opts.spec)?;
    let mut raw = None;
    let mut exec = || -> Result<()> {
        raw = Some(runner::execute(&resolved, Some(&units), ctx, observer)?);
        Ok(())
    };
    let task = match task_meter {
        Some(m) => Some(m.measure(&mut exec)?),
        None => {
            exec()?;
            None
        }
    };
    let raw = raw.ok_or_else(|| BenchError::config("shard", "execution produced no output"))?;
    let run = RunInfo {
        mode: plan.mode.name().to_string(),
        seeds: plan.seeds.clone(),
        scenarios: resolved
            .scenarios
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        min_measure_s: ctx.min_measure_s,
        total_wall_s: t0.elapsed().as_secs_f64(),
        skipped: resolved.skipped.clone(),
    };
    Ok(ShardFile {
        shard_format: SHARD_FORMAT_VERSION,
        provenance: Provenance {
            shard: opts.spec,
            host: hostname(),
            code_version: opts.code_version.clone(),
            generator: runner::generator(),
            started_unix_s: started,
            finished_unix_s: unix_now(),
            tracking_mode: opts.tracking_mode.clone(),
            slurm: SlurmTask::from_env(),
            task,
        },
        run,
        machine: MachineInfo::detect(),
        carbon: ctx.meter.settings(),
        units,
        raw,
    })
}

/// Writes a shard file atomically ([`crate::io::write_json`]): an interrupted task leaves no
/// torn shard behind, only a missing one.
///
/// # Errors
/// [`BenchError::Io`] or [`BenchError::Json`].
pub fn write_shard(path: &Path, shard: &ShardFile) -> Result<()> {
    crate::io::write_json(path, shard)
}

/// Reads a shard file.
///
/// # Errors
/// [`BenchError::Io`], [`BenchError::Json`] (a truncated or foreign file), or
/// [`BenchError::ShardContents`] for another shard format version.
pub fn read_shard(path: &Path) -> Result<ShardFile> {
    let s: ShardFile = crate::io::read_json(path)?;
    if s.shard_format != SHARD_FORMAT_VERSION {
        return Err(BenchError::ShardContents {
            path: path.to_path_buf(),
            reason: format!(
                "shard format {} (this build reads {SHARD_FORMAT_VERSION})",
                s.shard_format
            ),
        });
    }
    Ok(s)
}

/// Shard files named `shard-*-of-*.json` in `dir`, sorted by name.
///
/// # Errors
/// [`BenchError::Io`] if `dir` cannot be read.
pub fn shard_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))? {
        let e = e.map_err(|e| BenchError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("shard-") && name.contains("-of-") && name.ends_with(".json") {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(n: usize) -> Vec<Vec<WorkUnit>> {
        (0..n)
            .map(|i| {
                vec![WorkUnit {
                    scenario: format!("s{}", i / 6),
                    seed: (i / 3 % 2) as u64,
                    strategy: format!("m{}", i % 3),
                }]
            })
            .collect()
    }

    #[test]
    fn every_unit_is_in_exactly_one_shard_for_every_shard_count() {
        for total in [1usize, 2, 7, 18, 54] {
            let all = units(total);
            for count in 1..=total {
                let mut seen = Vec::new();
                let mut sizes = Vec::new();
                for index in 1..=count {
                    let part = partition(&all, ShardSpec::new(index, count).unwrap()).unwrap();
                    assert!(!part.is_empty(), "{index}/{count} of {total} is empty");
                    sizes.push(part.len());
                    seen.extend(part.iter().cloned());
                }
                assert_eq!(seen, all.concat(), "{count} shards of {total} units");
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "unbalanced: {sizes:?}");
            }
        }
    }

    #[test]
    fn bad_shard_specs_are_named_errors() {
        for (s, needle) in [
            ("5/4", "between 1 and 4"),
            ("0/4", "1-based"),
            ("1/0", "at least 1"),
            ("x/4", "index"),
            ("2", "INDEX/COUNT"),
            ("2/-1", "count"),
        ] {
            let e = s.parse::<ShardSpec>().unwrap_err();
            assert!(matches!(e, BenchError::InvalidShard { .. }), "{s}: {e}");
            assert!(e.to_string().contains(needle), "{s}: {e}");
            assert!(e.to_string().contains(s), "{s}: {e}");
        }
        assert_eq!(
            "2/4".parse::<ShardSpec>().unwrap(),
            ShardSpec::new(2, 4).unwrap()
        );
        let e = partition(&units(3), ShardSpec::new(1, 4).unwrap()).unwrap_err();
        assert!(e.to_string().contains("at most 3"), "{e}");
        // A hand-made (or deserialised) spec is checked too: no underflow.
        let e = partition(&units(3), ShardSpec { index: 0, count: 2 }).unwrap_err();
        assert!(e.to_string().contains("1-based"), "{e}");
    }
}
