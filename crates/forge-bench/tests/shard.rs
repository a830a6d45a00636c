//! Sharded sweeps: the aggregate of shards equals a single run (timing and energy aside), and
//! aggregation refuses mismatched, incomplete or duplicated shard sets with named errors.

mod common;

use common::{fixed_ctx, FixedMeter};
use forge_bench::compare::check_equal;
use forge_bench::runner::{self, NoProgress, RunPlan};
use forge_bench::scenario::{Mode, Registry};
use forge_bench::shard::{
    aggregate, partition, read_shard, run_shard, write_shard, ShardFile, ShardOptions, ShardSpec,
};
use forge_bench::BenchError;
use std::path::PathBuf;

fn toy_registry() -> Registry {
    let mut r = Registry::new();
    r.register(Box::new(forge_bench::example::Toy)).unwrap();
    r
}

fn toy_plan() -> RunPlan {
    RunPlan {
        mode: Mode::Quick,
        seeds: vec![0, 1, 2],
        scenarios: None,
    }
}

fn opts(i: usize, n: usize) -> ShardOptions {
    ShardOptions {
        spec: ShardSpec::new(i, n).unwrap(),
        code_version: "test".into(),
        tracking_mode: "process".into(),
    }
}

/// Every shard of `n` for `plan`, each measured as a task with a fixed meter.
fn shards(reg: &Registry, plan: &RunPlan, n: usize) -> Vec<(PathBuf, ShardFile)> {
    let ctx = fixed_ctx(1e-6);
    let task = FixedMeter { co2_kg: 1e-3 };
    (1..=n)
        .map(|i| {
            let s = run_shard(reg, plan, &ctx, &opts(i, n), Some(&task), &mut NoProgress).unwrap();
            (PathBuf::from(format!("shard-{i}-of-{n}.json")), s)
        })
        .collect()
}

#[test]
fn a_sharded_toy_run_aggregates_to_the_single_run_for_every_shard_count() {
    let reg = toy_registry();
    let plan = toy_plan();
    let single = runner::run(&reg, &plan, &fixed_ctx(1e-6), &mut NoProgress).unwrap();
    assert!(single.sweep.is_none());
    for n in 1..=6 {
        let agg = aggregate(&reg, &shards(&reg, &plan, n)).unwrap();
        check_equal(&single, &agg, 0.0).unwrap_or_else(|e| panic!("{n} shards: {e}"));
        // The fixed meter makes even the energy fields equal: the source cost is counted once.
        assert_eq!(agg.records, single.records, "{n} shards");
        assert_eq!(agg.source_costs, single.source_costs, "{n} shards");
        let sw = agg.sweep.as_ref().unwrap();
        assert_eq!((sw.shard_count, sw.shards.len()), (n, n));
        assert!((sw.total.co2_kg - n as f64 * 1e-3).abs() < 1e-12);
        assert_eq!(sw.nodes.len(), 1);
        assert_eq!(sw.nodes[0].tasks, n);
        forge_bench::validate::validate(&agg).unwrap();
        let footer = forge_bench::report::footer(&agg).join("\n");
        assert!(
            footer.contains(&format!("Sweep: {n} shard(s) on 1 node(s)")),
            "{footer}"
        );
        assert!(!forge_bench::report::footer(&single)
            .join("\n")
            .contains("Sweep:"));
    }
}

#[test]
fn a_sharded_classical_run_equals_the_single_run() {
    let reg = forge_bench::registry().unwrap();
    // Two scenarios x 1 seed: 20 units; 3 shards split trials across shards.
    let plan = RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: Some(vec!["diabetes".into(), "harmful-source".into()]),
    };
    let single = runner::run(&reg, &plan, &fixed_ctx(1e-6), &mut NoProgress).unwrap();
    let parts = shards(&reg, &plan, 3);
    let agg = aggregate(&reg, &parts).unwrap();
    check_equal(&single, &agg, 0.0).unwrap();
    assert_eq!(agg.gate, single.gate);
    assert_eq!(agg.convergence, single.convergence);
    assert!(agg.sweep.unwrap().extra_trials > 0, "a trial was split");
}

#[test]
fn written_shards_read_back_and_aggregate() {
    let reg = toy_registry();
    let dir = tempfile::tempdir().unwrap();
    let mut read = Vec::new();
    for (name, s) in shards(&reg, &toy_plan(), 2) {
        let p = dir.path().join(name);
        write_shard(&p, &s).unwrap();
        read.push((p.clone(), read_shard(&p).unwrap()));
    }
    assert_eq!(
        forge_bench::shard::shard_files_in(dir.path())
            .unwrap()
            .len(),
        2
    );
    aggregate(&reg, &read).unwrap();
    // A truncated shard (a task killed mid-write without the atomic writer) is a JSON error
    // naming the file.
    let p = &read[0].0;
    let text = std::fs::read_to_string(p).unwrap();
    std::fs::write(p, &text[..text.len() / 2]).unwrap();
    let e = read_shard(p).unwrap_err();
    assert!(matches!(e, BenchError::Json { .. }), "{e}");
    assert!(e.to_string().contains("shard-1-of-2.json"), "{e}");
}

#[test]
fn missing_shards_are_named() {
    let reg = toy_registry();
    let mut parts = shards(&reg, &toy_plan(), 4);
    parts.remove(2);
    parts.remove(0);
    let e = aggregate(&reg, &parts).unwrap_err();
    assert!(matches!(e, BenchError::MissingUnits { .. }), "{e}");
    assert!(e.to_string().contains("1/4, 3/4"), "{e}");
    assert!(e.to_string().contains("--resume"), "{e}");
    assert!(matches!(aggregate(&reg, &[]), Err(BenchError::NoShards)));
}

#[test]
fn a_shard_given_twice_is_a_duplicate_unit() {
    let reg = toy_registry();
    let mut parts = shards(&reg, &toy_plan(), 3);
    let again = (PathBuf::from("copy-of-2.json"), parts[1].1.clone());
    parts.push(again);
    let e = aggregate(&reg, &parts).unwrap_err();
    assert!(matches!(e, BenchError::DuplicateUnit { .. }), "{e}");
    assert!(e.to_string().contains("shard-2-of-3.json"), "{e}");
    assert!(e.to_string().contains("copy-of-2.json"), "{e}");
}

#[test]
fn shards_of_another_split_or_run_are_refused_naming_the_field() {
    let reg = toy_registry();
    let base = shards(&reg, &toy_plan(), 2);
    let field_of = |parts: &[(PathBuf, ShardFile)]| match aggregate(&reg, parts).unwrap_err() {
        BenchError::ShardMismatch { field, .. } => field,
        other => panic!("expected a mismatch, got {other}"),
    };
    let mut parts = base.clone();
    parts[1].1.provenance.code_version = "other".into();
    assert_eq!(field_of(&parts), "code version");
    let mut parts = base.clone();
    parts[1].1.run.mode = "full".into();
    assert_eq!(field_of(&parts), "mode");
    let mut parts = base.clone();
    parts[1].1.run.seeds = vec![0, 1];
    assert_eq!(field_of(&parts), "seeds");
    let mut parts = base.clone();
    parts[1].1.carbon.carbon_intensity_g_per_kwh = 50.0;
    assert_eq!(field_of(&parts), "carbon settings");
    let mut parts = base.clone();
    parts[1].1.provenance.tracking_mode = "machine".into();
    assert_eq!(field_of(&parts), "tracking mode");
    // Shards of two different splits.
    let mut parts = base.clone();
    parts[1] = shards(&reg, &toy_plan(), 3).remove(1);
    assert_eq!(field_of(&parts), "shard count");
    // The carbon note is per machine (W per CPU): it may differ.
    let mut parts = base.clone();
    parts[1].1.carbon.note = "another node".into();
    aggregate(&reg, &parts).unwrap();
}

#[test]
fn a_shard_missing_a_record_or_holding_foreign_units_is_refused() {
    let reg = toy_registry();
    let base = shards(&reg, &toy_plan(), 2);
    let mut parts = base.clone();
    parts[0].1.raw.records.pop();
    let e = aggregate(&reg, &parts).unwrap_err();
    assert!(matches!(e, BenchError::ShardContents { .. }), "{e}");
    assert!(e.to_string().contains("no record for its unit"), "{e}");
    let mut parts = base.clone();
    parts[0].1.units.pop();
    let e = aggregate(&reg, &parts).unwrap_err();
    assert!(e.to_string().contains("not shard 1/2's"), "{e}");
}

#[test]
fn machine_mode_tasks_overlapping_on_one_node_are_refused() {
    let reg = toy_registry();
    let mut parts = shards(&reg, &toy_plan(), 2);
    for (_, s) in parts.iter_mut() {
        s.provenance.tracking_mode = "machine".into();
        s.provenance.host = "node1".into();
        s.provenance.started_unix_s = 100.0;
        s.provenance.finished_unix_s = 200.0;
    }
    let e = aggregate(&reg, &parts).unwrap_err();
    assert!(matches!(e, BenchError::SharedNodeMachineMode { .. }), "{e}");
    assert!(e.to_string().contains("node1"), "{e}");
    // One after the other on the node, or on two nodes: each machine counted once.
    parts[1].1.provenance.started_unix_s = 200.0;
    parts[1].1.provenance.finished_unix_s = 300.0;
    aggregate(&reg, &parts).unwrap();
    parts[1].1.provenance.started_unix_s = 100.0;
    parts[1].1.provenance.host = "node2".into();
    let agg = aggregate(&reg, &parts).unwrap();
    assert_eq!(agg.sweep.unwrap().nodes.len(), 2);
}

#[test]
fn results_that_differ_in_quality_are_named_and_timing_is_ignored() {
    let reg = toy_registry();
    let plan = toy_plan();
    let a = runner::run(&reg, &plan, &fixed_ctx(1e-6), &mut NoProgress).unwrap();
    // Another meter: every energy field differs, nothing else.
    let b = runner::run(&reg, &plan, &fixed_ctx(7e-6), &mut NoProgress).unwrap();
    check_equal(&a, &b, 0.0).unwrap();
    let mut c = b.clone();
    c.records[1].quality += 1e-3;
    let e = check_equal(&a, &c, 0.0).unwrap_err();
    assert!(matches!(e, BenchError::ResultsDiffer { .. }), "{e}");
    assert!(e.to_string().contains("records[1].quality"), "{e}");
    check_equal(&a, &c, 1e-2).unwrap();
}

#[test]
fn more_shards_than_units_is_a_typed_error() {
    let reg = toy_registry();
    let e = run_shard(
        &reg,
        &toy_plan(),
        &fixed_ctx(1e-6),
        &opts(7, 7),
        None,
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, BenchError::InvalidShard { .. }), "{e}");
    let units = runner::atoms_of(&[&forge_bench::example::Toy], &[0, 1, 2]);
    assert_eq!(
        partition(&units, ShardSpec::new(6, 6).unwrap())
            .unwrap()
            .len(),
        1
    );
}

/// The toy scenario, asking that its trials run whole.
struct WholeToy;
impl forge_bench::Scenario for WholeToy {
    fn name(&self) -> &str {
        "whole-toy"
    }
    fn description(&self) -> &str {
        "the toy scenario, trials kept whole"
    }
    fn metric(&self) -> forge_bench::schema::Metric {
        forge_bench::example::Toy.metric()
    }
    fn strategies(&self) -> Vec<forge_bench::StrategySpec> {
        forge_bench::example::Toy.strategies()
    }
    fn headline_strategy(&self) -> &str {
        forge_bench::example::Toy::TRANSFER
    }
    fn whole_trials(&self) -> bool {
        true
    }
    fn trial(
        &self,
        seed: u64,
        ctx: &forge_bench::RunContext,
    ) -> forge_bench::Result<Box<dyn forge_bench::Trial>> {
        forge_bench::example::Toy.trial(seed, ctx)
    }
}

#[test]
fn a_scenario_that_needs_whole_trials_is_split_by_trial_only() {
    use forge_bench::Scenario;
    let mut reg = toy_registry();
    reg.register(Box::new(WholeToy)).unwrap();
    let plan = toy_plan();
    // toy: 3 seeds x 2 strategies split by unit (6 pieces); whole-toy: 3 whole trials.
    let atoms = runner::atoms_of(&[&forge_bench::example::Toy, &WholeToy], &plan.seeds);
    assert_eq!(atoms.len(), 9);
    assert!(atoms[6..].iter().all(|a| a.len() == 2));
    let single = runner::run(&reg, &plan, &fixed_ctx(1e-6), &mut NoProgress).unwrap();
    for n in 1..=9 {
        let parts = shards(&reg, &plan, n);
        for (_, s) in &parts {
            for u in s.units.iter().filter(|u| u.scenario == "whole-toy") {
                let trial = s
                    .units
                    .iter()
                    .filter(|v| v.scenario == u.scenario && v.seed == u.seed)
                    .count();
                assert_eq!(trial, 2, "{n} shards split a whole trial");
            }
        }
        let agg = aggregate(&reg, &parts).unwrap();
        check_equal(&single, &agg, 0.0).unwrap_or_else(|e| panic!("{n} shards: {e}"));
    }
    let e = run_shard(
        &reg,
        &plan,
        &fixed_ctx(1e-6),
        &opts(10, 10),
        None,
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 9"), "{e}");
    assert!(WholeToy.whole_trials() && !forge_bench::example::Toy.whole_trials());
}

#[test]
fn a_sharded_transformer_run_on_a_tiny_model_equals_the_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model_with_tokenizer("tiny-bert", dir.path());
    let text = common::tiny_sst2(&dir.path().join("text"), 240, 60);
    let mut ctx = fixed_ctx(1e-6);
    ctx.model_id = Some(model.display().to_string());
    ctx.model_dir = Some(model);
    ctx.text_data_dir = Some(text);
    let reg = forge_bench::registry().unwrap();
    let plan = RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: Some(vec![forge_bench::transformer::SST2_FULL_VS_LORA.into()]),
    };
    common::within(300, move || {
        let single = runner::run(&reg, &plan, &ctx, &mut NoProgress).unwrap();
        // One strategy per shard: each shard loads the model and trains one strategy.
        let n = single.records.len();
        let parts: Vec<(PathBuf, ShardFile)> = (1..=n)
            .map(|i| {
                let s = run_shard(&reg, &plan, &ctx, &opts(i, n), None, &mut NoProgress).unwrap();
                (PathBuf::from(format!("shard-{i}-of-{n}.json")), s)
            })
            .collect();
        let agg = aggregate(&reg, &parts).unwrap();
        check_equal(&single, &agg, 0.0).unwrap();
    });
}

/// Every transformer scenario on a tiny model, alone in its plan, split as finely as it allows,
/// each shard starting with an empty model cache (as a separate process does): equal to the
/// single run. About 45 s in debug: opt in with `FORGE_SLOW_TESTS=1`.
#[test]
fn every_transformer_scenario_sharded_alone_equals_its_single_run() {
    if std::env::var("FORGE_SLOW_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set FORGE_SLOW_TESTS=1 to shard every transformer scenario");
        return;
    }
    use forge_bench::transformer::{
        shared, CKA_LAYERS, DL_GATE, SST2_LORA_SOUP, SST2_MERGE, SST2_TO_AGNEWS,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model_with_tokenizer("tiny-bert", dir.path());
    let text = common::tiny_sst2(&dir.path().join("text"), 240, 60);
    common::tiny_ag_news(&text, 240, 80);
    let mut ctx = fixed_ctx(1e-6);
    ctx.model_id = Some(model.display().to_string());
    ctx.model_dir = Some(model);
    ctx.text_data_dir = Some(text);
    let reg = forge_bench::registry().unwrap();
    for sc in [
        SST2_TO_AGNEWS,
        SST2_MERGE,
        SST2_LORA_SOUP,
        CKA_LAYERS,
        DL_GATE,
    ] {
        let plan = RunPlan {
            mode: Mode::Quick,
            seeds: vec![0],
            scenarios: Some(vec![sc.into()]),
        };
        shared::clear_cache();
        let single = runner::run(&reg, &plan, &ctx, &mut NoProgress).unwrap();
        let n = runner::resolve(&reg, &plan, &ctx).unwrap().atoms.len();
        let parts: Vec<(PathBuf, ShardFile)> = (1..=n)
            .map(|i| {
                shared::clear_cache();
                let s = run_shard(&reg, &plan, &ctx, &opts(i, n), None, &mut NoProgress).unwrap();
                (PathBuf::from(format!("shard-{i}-of-{n}.json")), s)
            })
            .collect();
        let agg = aggregate(&reg, &parts).unwrap();
        check_equal(&single, &agg, 0.0).unwrap_or_else(|e| panic!("{sc}, {n} shards: {e}"));
    }
}
