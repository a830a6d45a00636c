//! Sweeps beyond one process: work units split into shards, results shards, and their
//! aggregation into exactly the [`ResultsFile`] a single run writes.
//!
//! A plan's work units are its scenario x seed x strategy triples in canonical order (scenario,
//! then seed, then the scenario's strategy order; [`runner::units_of`]). [`partition`] gives
//! shard `i` of `N` (1-based, as Slurm array indices) a contiguous block of them, sizes
//! differing by at most one. Contiguous blocks keep most scenario x seed trials inside one
//! shard: a trial's set-up (data loading, the source fit) is shared by its strategies, and a
//! trial split across shards is built once per shard. A trial's own outputs (source cost,
//! convergence curves, gate decision) are produced only by the shard holding its BASELINE unit
//! ([`runner::execute`]), so nothing is recorded twice; [`SweepInfo::extra_trials`] counts the
//! rebuilt ones.
//!
//! [`run_shard`] executes one shard and returns a [`ShardFile`]: the raw records plus the
//! provenance (host, shard, units, start and end, carbon settings, code version, mode, seeds,
//! Slurm job). [`aggregate`] checks that a set of shard files belongs to one sweep (same code
//! version, mode, seeds, scenarios and carbon settings; every unit exactly once) and finalises
//! them with [`runner::finalize`], the same code a single run uses. [`check_equal`] compares
//! two results files ignoring timing and energy.
//!
//! # Carbon
//! Each task measures its own process ([`Provenance::task`]); the aggregate sums the tasks and
//! records per-node totals ([`SweepInfo`]). Process-mode measurements of different processes
//! are disjoint, so summing tasks that shared a node counts nothing twice. Whole-machine
//! measurements of tasks that overlapped in time on one node would each include the others:
//! [`aggregate`] refuses them ([`BenchError::SharedNodeMachineMode`]).

use crate::error::{BenchError, Result};
use crate::runner::{self, Observer, RawRun, RunPlan, WorkUnit};
use crate::scenario::{Meter, Registry, RunContext};
use crate::schema::{
    CarbonSettings, MachineInfo, Measurement, NodeTotal, ResultsFile, RunInfo, ShardSummary,
    SweepInfo,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
        let (i, n) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("expected INDEX/COUNT, e.g. 2/4"))?;
        let i: usize = i
            .trim()
            .parse()
            .map_err(|_| bad("the index is not a non-negative integer"))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a non-negative integer"))?;
        Self::new(i, n).map_err(|e| match e {
            BenchError::InvalidShard { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// The units of shard `spec`: the `spec.index`-th of `spec.count` contiguous blocks of
/// `units`, whose sizes differ by at most one. Over `1..=count` the blocks cover every unit
/// exactly once, in order.
///
/// # Errors
/// [`BenchError::InvalidShard`] if there are more shards than units (a shard would be empty).
pub fn partition(units: &[WorkUnit], spec: ShardSpec) -> Result<&[WorkUnit]> {
    let n = units.len();
    if spec.count > n {
        return Err(BenchError::InvalidShard {
            spec: spec.to_string(),
            reason: format!(
                "{} shards for {n} work unit(s) would leave shards empty; use at most {n}",
                spec.count
            ),
        });
    }
    let lo = (spec.index - 1) * n / spec.count;
    let hi = spec.index * n / spec.count;
    Ok(&units[lo..hi])
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
    let units = partition(&resolved.units, opts.spec)?.to_vec();
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

/// The carbon settings every shard of a sweep must share (the free-text note is per machine).
fn carbon_key(c: &CarbonSettings) -> String {
    format!(
        "energy method {:?}, {} g/kWh, PUE {}, region {}",
        c.energy_method, c.carbon_intensity_g_per_kwh, c.pue, c.region
    )
}

/// Checks that `shards` are one complete sweep and merges them into the results file a single
/// run of the same plan writes, plus a [`SweepInfo`] section (shards, per-task, per-node and
/// total carbon).
///
/// Checked, in this order, each failure naming the files: every shard has the same code
/// version, mode, seeds, scenarios, measurement window, shard count, tracking mode and carbon
/// settings ([`BenchError::ShardMismatch`]); each shard holds exactly its [`partition`] and a
/// record for each of its units ([`BenchError::ShardContents`]); no unit is in two files
/// ([`BenchError::DuplicateUnit`]); no unit is missing ([`BenchError::MissingUnits`]); no two
/// machine-mode tasks overlapped on one node ([`BenchError::SharedNodeMachineMode`]).
///
/// # Errors
/// The above, [`BenchError::NoShards`], and [`runner::finalize`]'s.
pub fn aggregate(registry: &Registry, shards: &[(PathBuf, ShardFile)]) -> Result<ResultsFile> {
    let (p0, s0) = shards.first().ok_or(BenchError::NoShards)?;
    for (p, s) in &shards[1..] {
        let checks: [(&str, String, String); 8] = [
            (
                "code version",
                s0.provenance.code_version.clone(),
                s.provenance.code_version.clone(),
            ),
            ("mode", s0.run.mode.clone(), s.run.mode.clone()),
            (
                "seeds",
                format!("{:?}", s0.run.seeds),
                format!("{:?}", s.run.seeds),
            ),
            (
                "scenarios",
                format!("{:?}", s0.run.scenarios),
                format!("{:?}", s.run.scenarios),
            ),
            (
                "measurement window (min_measure_s)",
                s0.run.min_measure_s.to_string(),
                s.run.min_measure_s.to_string(),
            ),
            (
                "shard count",
                s0.provenance.shard.count.to_string(),
                s.provenance.shard.count.to_string(),
            ),
            (
                "tracking mode",
                s0.provenance.tracking_mode.clone(),
                s.provenance.tracking_mode.clone(),
            ),
            (
                "carbon settings",
                carbon_key(&s0.carbon),
                carbon_key(&s.carbon),
            ),
        ];
        for (field, a, b) in checks {
            if a != b {
                return Err(BenchError::ShardMismatch {
                    field: field.into(),
                    first: p0.clone(),
                    other: p.clone(),
                    values: Box::new((a, b)),
                });
            }
        }
    }
    let scenarios: Vec<&dyn crate::Scenario> = s0
        .run
        .scenarios
        .iter()
        .map(|n| {
            registry.get(n).ok_or_else(|| BenchError::UnknownScenario {
                name: n.clone(),
                known: registry.names().join(", "),
            })
        })
        .collect::<Result<_>>()?;
    let all = runner::units_of(&scenarios, &s0.run.seeds);
    let count = s0.provenance.shard.count;

    let mut owner: BTreeMap<&WorkUnit, &Path> = BTreeMap::new();
    for (p, s) in shards {
        let want = partition(&all, s.provenance.shard)?;
        if s.units.as_slice() != want {
            return Err(BenchError::ShardContents {
                path: p.clone(),
                reason: format!(
                    "its {} unit(s) are not shard {}'s {} unit(s) of this plan",
                    s.units.len(),
                    s.provenance.shard,
                    want.len()
                ),
            });
        }
        let recorded: BTreeSet<WorkUnit> = s
            .raw
            .records
            .iter()
            .map(|r| WorkUnit {
                scenario: r.scenario.clone(),
                seed: r.seed,
                strategy: r.strategy.clone(),
            })
            .collect();
        if recorded.len() != s.raw.records.len() {
            return Err(BenchError::ShardContents {
                path: p.clone(),
                reason: "a work unit has more than one record".into(),
            });
        }
        if let Some(u) = s.units.iter().find(|u| !recorded.contains(*u)) {
            return Err(BenchError::ShardContents {
                path: p.clone(),
                reason: format!("no record for its unit {u}"),
            });
        }
        if let Some(u) = recorded.iter().find(|u| !s.units.contains(u)) {
            return Err(BenchError::ShardContents {
                path: p.clone(),
                reason: format!("a record for {u}, which is not one of its units"),
            });
        }
        for u in &s.units {
            if let Some(first) = owner.insert(u, p) {
                return Err(BenchError::DuplicateUnit {
                    unit: u.to_string(),
                    first: first.to_path_buf(),
                    second: p.clone(),
                });
            }
        }
    }
    let missing: Vec<&WorkUnit> = all.iter().filter(|u| !owner.contains_key(u)).collect();
    if !missing.is_empty() {
        let present: BTreeSet<usize> = shards
            .iter()
            .map(|(_, s)| s.provenance.shard.index)
            .collect();
        let absent: Vec<String> = (1..=count)
            .filter(|i| !present.contains(i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        return Err(BenchError::MissingUnits {
            shards: absent.join(", "),
            count: missing.len(),
            examples: missing
                .iter()
                .take(3)
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    check_machine_mode(shards)?;

    let mut ordered: Vec<&(PathBuf, ShardFile)> = shards.iter().collect();
    ordered.sort_by_key(|(_, s)| s.provenance.shard.index);
    let mut raw = RawRun::default();
    for (_, s) in &ordered {
        raw.records.extend(s.raw.records.iter().cloned());
        raw.source_costs.extend(s.raw.source_costs.iter().cloned());
        raw.convergence.extend(s.raw.convergence.iter().cloned());
        raw.gate.extend(s.raw.gate.iter().cloned());
        raw.extra_trials += s.raw.extra_trials;
    }
    let start = ordered
        .iter()
        .map(|(_, s)| s.provenance.started_unix_s)
        .fold(f64::INFINITY, f64::min);
    let end = ordered
        .iter()
        .map(|(_, s)| s.provenance.finished_unix_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let run = RunInfo {
        total_wall_s: (end - start).max(0.0),
        ..s0.run.clone()
    };
    let extra_trials = raw.extra_trials;
    let mut out = runner::finalize(registry, run, s0.machine.clone(), s0.carbon.clone(), raw)?;
    out.sweep = Some(sweep_info(&ordered, extra_trials));
    Ok(out)
}

fn check_machine_mode(shards: &[(PathBuf, ShardFile)]) -> Result<()> {
    let machine: Vec<&ShardFile> = shards
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.provenance.tracking_mode == "machine")
        .collect();
    for (i, a) in machine.iter().enumerate() {
        for b in &machine[i + 1..] {
            let (pa, pb) = (&a.provenance, &b.provenance);
            let overlap =
                pa.started_unix_s < pb.finished_unix_s && pb.started_unix_s < pa.finished_unix_s;
            if pa.host == pb.host && overlap {
                return Err(BenchError::SharedNodeMachineMode {
                    host: pa.host.clone(),
                    shards: format!("{} and {}", pa.shard, pb.shard),
                });
            }
        }
    }
    Ok(())
}

/// The accounting rule recorded in every [`SweepInfo`].
pub const CARBON_RULE: &str =
    "Each task measured its own process (scope: the task, not the machine); \
the total is the sum over tasks and each node's total the sum over the tasks that ran there. \
Process-mode measurements of different processes are disjoint, so tasks sharing a node are not \
double counted; whole-machine (machine-mode) measurements are accepted only when no two tasks \
overlapped in time on one node. Records keep per-unit training costs; each source fit is \
counted once in source_costs (by the shard of the trial's baseline), while trials rebuilt by a \
second shard appear only in that task's total.";

/// Adds `m` into `acc` (energies, CO2 and wall time summed; methods merged).
fn add_measurement(acc: &mut Measurement, m: &Measurement) {
    acc.wall_time_s += m.wall_time_s;
    acc.cpu_kwh += m.cpu_kwh;
    acc.ram_kwh += m.ram_kwh;
    acc.gpu_kwh += m.gpu_kwh;
    acc.total_kwh += m.total_kwh;
    acc.co2_kg += m.co2_kg;
    acc.repeats = 1;
    for (k, v) in &m.energy_method {
        let e = acc.energy_method.entry(k.clone()).or_default();
        if e.is_empty() {
            e.clone_from(v);
        } else if !e.split(", ").any(|x| x == v) {
            e.push_str(", ");
            e.push_str(v);
        }
    }
}

fn sweep_info(ordered: &[&(PathBuf, ShardFile)], extra_trials: usize) -> SweepInfo {
    let mut nodes: Vec<NodeTotal> = Vec::new();
    let mut total = Measurement {
        repeats: 1,
        ..Default::default()
    };
    let mut shards = Vec::new();
    for (_, s) in ordered {
        let p = &s.provenance;
        shards.push(ShardSummary {
            index: p.shard.index,
            host: p.host.clone(),
            units: s.units.len(),
            started_unix_s: p.started_unix_s,
            finished_unix_s: p.finished_unix_s,
            slurm_job: p.slurm.as_ref().map(SlurmTask::label),
            task: p.task.clone(),
        });
        let node = match nodes.iter_mut().position(|n| n.host == p.host) {
            Some(i) => &mut nodes[i],
            None => {
                nodes.push(NodeTotal {
                    host: p.host.clone(),
                    tasks: 0,
                    total: Measurement {
                        repeats: 1,
                        ..Default::default()
                    },
                });
                let last = nodes.len() - 1;
                &mut nodes[last]
            }
        };
        node.tasks += 1;
        if let Some(t) = &p.task {
            add_measurement(&mut node.total, t);
            add_measurement(&mut total, t);
        }
    }
    let first = &ordered[0].1.provenance;
    SweepInfo {
        code_version: first.code_version.clone(),
        shard_count: first.shard.count,
        tracking_mode: first.tracking_mode.clone(),
        extra_trials,
        shards,
        nodes,
        total,
        rule: CARBON_RULE.into(),
    }
}

/// `r` with every timing- and energy-derived field zeroed and the provenance that says where
/// and when it ran removed (`created_unix_s`, `machine`, the carbon note, `sweep`): what must be
/// equal between two runs of the same plan by the same code. Kept: qualities, metrics, steps,
/// epochs, configurations, notes, curves, gate decisions, carbon intensity, PUE and methods.
pub fn comparable(r: &ResultsFile) -> ResultsFile {
    fn strip(m: &mut Measurement) {
        *m = Measurement {
            energy_method: std::mem::take(&mut m.energy_method),
            ..Default::default()
        };
    }
    let mut r = r.clone();
    r.created_unix_s = 0;
    r.run.total_wall_s = 0.0;
    r.machine = MachineInfo::default();
    r.carbon.note.clear();
    r.sweep = None;
    for x in &mut r.records {
        strip(&mut x.training);
        x.co2_kg_with_source = 0.0;
        x.co2_reduction_pct = 0.0;
        x.co2_reduction_with_source_pct = 0.0;
    }
    for c in &mut r.source_costs {
        strip(&mut c.training);
    }
    for a in &mut r.aggregates {
        for m in [
            &mut a.wall_time_s,
            &mut a.energy_kwh,
            &mut a.co2_kg,
            &mut a.co2_kg_with_source,
            &mut a.co2_reduction_pct,
            &mut a.co2_reduction_with_source_pct,
        ] {
            *m = Default::default();
        }
    }
    for s in &mut r.scenarios {
        for m in [
            &mut s.baseline_co2_kg,
            &mut s.transfer_co2_kg,
            &mut s.co2_reduction_pct,
            &mut s.co2_reduction_with_source_pct,
        ] {
            *m = Default::default();
        }
    }
    r
}

/// The fields in which `a` and `b` differ after [`comparable`], as `path: left != right`, at
/// most `max` of them (and the total count). Numbers within `rel_tol` (relative) are equal.
pub fn differences(
    a: &ResultsFile,
    b: &ResultsFile,
    rel_tol: f64,
    max: usize,
) -> (usize, Vec<String>) {
    let to_value = |r: &ResultsFile| serde_json::to_value(comparable(r)).unwrap_or_default();
    let (va, vb) = (to_value(a), to_value(b));
    let mut out = Vec::new();
    let mut count = 0;
    diff_values("", &va, &vb, rel_tol, max, &mut count, &mut out);
    (count, out)
}

fn diff_values(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    tol: f64,
    max: usize,
    count: &mut usize,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    fn push(count: &mut usize, out: &mut Vec<String>, max: usize, what: String) {
        *count += 1;
        if out.len() < max {
            out.push(what);
        }
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff_values(&p, u, v, tol, max, count, out),
                    (u, v) => push(count, out, max, format!("{p}: {u:?} != {v:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                push(
                    count,
                    out,
                    max,
                    format!("{path}: {} items != {} items", x.len(), y.len()),
                );
                return;
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), u, v, tol, max, count, out);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (u, v) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            let equal = x == y || (u - v).abs() <= tol * u.abs().max(v.abs());
            if !equal {
                push(count, out, max, format!("{path}: {x} != {y}"));
            }
        }
        (u, v) => {
            if u != v {
                push(count, out, max, format!("{path}: {u} != {v}"));
            }
        }
    }
}

/// How many differences [`check_equal`] lists.
pub const MAX_LISTED_DIFFERENCES: usize = 20;

/// Checks that `a` and `b` are equal in every field except timing and energy ([`comparable`]),
/// numbers within `rel_tol` (relative; 0 = exactly equal).
///
/// # Errors
/// [`BenchError::ResultsDiffer`] listing the first [`MAX_LISTED_DIFFERENCES`] differences.
pub fn check_equal(a: &ResultsFile, b: &ResultsFile, rel_tol: f64) -> Result<()> {
    let (count, diffs) = differences(a, b, rel_tol, MAX_LISTED_DIFFERENCES);
    if count == 0 {
        Ok(())
    } else {
        Err(BenchError::ResultsDiffer {
            count,
            differences: diffs.join("\n"),
        })
    }
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

    fn units(n: usize) -> Vec<WorkUnit> {
        (0..n)
            .map(|i| WorkUnit {
                scenario: format!("s{}", i / 6),
                seed: (i / 3 % 2) as u64,
                strategy: format!("m{}", i % 3),
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
                assert_eq!(seen, all, "{count} shards of {total} units");
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
    }
}
