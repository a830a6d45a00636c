//! Aggregation of results shards: checks that a set of shards is one complete sweep, merges
//! them into the results file a single run writes ([`runner::finalize`]), and sums the tasks'
//! carbon per node and overall ([`SweepInfo`]). See [`crate::shard`] for the shards themselves.

use crate::error::{BenchError, Result};
use crate::runner::{self, RawRun, WorkUnit};
use crate::scenario::{Registry, Scenario};
use crate::schema::{
    CarbonSettings, Measurement, NodeTotal, ResultsFile, RunInfo, ShardSummary, SweepInfo,
};
use crate::shard::{partition, ShardFile, SlurmTask};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
    let (_, s0) = shards.first().ok_or(BenchError::NoShards)?;
    check_same_sweep(shards)?;
    let scenarios: Vec<&dyn Scenario> = s0
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
    let atoms = runner::atoms_of(&scenarios, &s0.run.seeds);
    check_units(&atoms, shards)?;
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

/// Every shard shares the first one's code version, plan, measurement window, shard count,
/// tracking mode and carbon settings.
fn check_same_sweep(shards: &[(PathBuf, ShardFile)]) -> Result<()> {
    let Some((p0, s0)) = shards.first() else {
        return Err(BenchError::NoShards);
    };
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
                    files: Box::new((p0.clone(), p.clone())),
                    values: Box::new((a, b)),
                });
            }
        }
    }
    Ok(())
}

/// Each shard holds exactly its partition of `atoms` and one record per unit; together they
/// cover every unit exactly once.
fn check_units(atoms: &[Vec<WorkUnit>], shards: &[(PathBuf, ShardFile)]) -> Result<()> {
    let all = atoms.concat();
    let count = shards.first().map_or(1, |(_, s)| s.provenance.shard.count);
    let mut owner: BTreeMap<&WorkUnit, &Path> = BTreeMap::new();
    for (p, s) in shards {
        let want = partition(atoms, s.provenance.shard)?;
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
                    files: Box::new((first.to_path_buf(), p.clone())),
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
    Ok(())
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
