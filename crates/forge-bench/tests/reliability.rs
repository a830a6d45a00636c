//! Bad results must never pass silently (issue 16): the readers behind `xtask gate` and
//! `xtask readme` refuse non-finite, absurd and empty results naming the field; the writer
//! never turns a non-finite number into `null`; a failed write keeps the results elsewhere; and
//! `figures` finishes on degenerate input.

mod common;

use forge_bench::example::Toy;
use forge_bench::scenario::{Mode, Registry};
use forge_bench::schema::*;
use forge_bench::{figures, io, runner, validate, BenchError};

fn toy_results() -> ResultsFile {
    let mut reg = Registry::new();
    reg.register(Box::new(Toy)).unwrap();
    let plan = runner::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0, 1],
        scenarios: None,
    };
    runner::run(
        &reg,
        &plan,
        &common::fixed_ctx(1e-9),
        &mut runner::NoProgress,
    )
    .unwrap()
}

/// Replaces every floating-point number of a JSON value by `x`; returns how many.
fn set_floats(v: &mut serde_json::Value, x: f64) -> usize {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            *v = serde_json::json!(x);
            1
        }
        serde_json::Value::Array(a) => a.iter_mut().map(|e| set_floats(e, x)).sum(),
        serde_json::Value::Object(o) => o.values_mut().map(|e| set_floats(e, x)).sum(),
        _ => 0,
    }
}

fn invalid_field(e: &BenchError) -> String {
    match e {
        BenchError::InvalidResults { field, .. } => field.clone(),
        other => panic!("expected InvalidResults, got {other}"),
    }
}

#[test]
fn the_validator_sees_every_float_of_the_file() {
    let r = toy_results();
    let mut v = serde_json::to_value(&r).unwrap();
    let n = set_floats(&mut v, 0.5);
    assert_eq!(validate::float_fields(&r).len(), n);
    validate::validate(&r).unwrap();
}

#[test]
fn absurd_values_are_refused_by_the_readers_naming_the_field() {
    // `xtask gate` passed ("73 thresholds met") on a file whose every float was 1.7e308.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absurd.json");
    let mut v = serde_json::to_value(toy_results()).unwrap();
    set_floats(&mut v, 1.7e308);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let e = io::read_results(&p).unwrap_err();
    assert_eq!(invalid_field(&e), "run.min_measure_s");
    let msg = e.to_string();
    assert!(
        msg.contains("absurd.json") && msg.contains("1.7e308"),
        "{msg}"
    );

    // One absurd value deep inside is named precisely.
    let mut v = serde_json::to_value(toy_results()).unwrap();
    v["aggregates"][1]["co2_kg"]["mean"] = serde_json::json!(1.7e308);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let e = io::read_results(&p).unwrap_err();
    assert_eq!(invalid_field(&e), "aggregates[1].co2_kg.mean");

    // An impossible accuracy / reduction / negative energy.
    let mut r = toy_results();
    r.records[0].training.total_kwh = -1.0;
    assert_eq!(
        invalid_field(&validate::validate(&r).unwrap_err()),
        "records[0].training.total_kwh"
    );
    let mut r = toy_results();
    r.aggregates[0].co2_reduction_pct.mean = 250.0;
    assert_eq!(
        invalid_field(&validate::validate(&r).unwrap_err()),
        "aggregates[0].co2_reduction_pct.mean"
    );
}

#[test]
fn empty_results_are_refused_naming_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.json");
    let mut r = toy_results();
    r.records.clear();
    r.aggregates.clear();
    r.scenarios.clear();
    io::write_json(&p, &r).unwrap();
    let e = io::read_results(&p).unwrap_err();
    assert_eq!(invalid_field(&e), "records");
    // And a JSON object that is not a results file says so.
    std::fs::write(&p, "{}").unwrap();
    let e = io::read_results(&p).unwrap_err();
    assert!(e.to_string().contains("no schema_version"), "{e}");
}

#[test]
fn non_finite_values_are_not_written_as_null() {
    // A demo run with FORGE_CARBON_INTENSITY=1e308 wrote `null`s that its own readers rejected
    // without naming the field.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    let mut r = toy_results();
    r.records[1].training.co2_kg = f64::INFINITY;
    let e = io::write_results(&p, &r).unwrap_err();
    assert_eq!(invalid_field(&e), "records[1].training.co2_kg");
    assert!(!p.exists(), "nothing may be written");
    let mut r = toy_results();
    r.records[0]
        .config
        .insert("lr".into(), ConfigValue::Float(f64::NAN));
    assert_eq!(
        invalid_field(&io::write_results(&p, &r).unwrap_err()),
        "records[0].config.lr"
    );
    // The runner refuses a non-finite measurement at its source, naming it.
    let mut reg = Registry::new();
    reg.register(Box::new(Toy)).unwrap();
    let plan = runner::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: None,
    };
    let e = runner::run(
        &reg,
        &plan,
        &common::fixed_ctx(f64::NAN),
        &mut runner::NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&e, BenchError::NonFinite { what, .. } if what == "training.cpu_kwh"),
        "{e}"
    );
}

#[test]
fn a_failed_write_keeps_the_results_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file cannot be created, even by root.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let wanted = blocker.join("out/results.json");
    let ok = dir.path().join("ok.json");
    let fallback = dir.path().join("fallback");
    let r = toy_results();
    let saved = io::save_results(&r, &[ok.clone(), wanted.clone()], &fallback).unwrap();
    assert!(matches!(&saved[0], io::Saved::AtPath(p) if p == &ok));
    match &saved[1] {
        io::Saved::Fallback {
            wanted: w, written, ..
        } => {
            assert_eq!(w, &wanted);
            assert!(written.starts_with(&fallback));
            assert_eq!(
                io::read_results(written).unwrap().records.len(),
                r.records.len()
            );
        }
        other => panic!("expected a fallback, got {other:?}"),
    }
}

/// A results file with a scenario that has no aggregates, and one with extreme values.
fn degenerate() -> ResultsFile {
    let mut r = toy_results();
    r.run.scenarios.push("ghost".into());
    r
}

#[test]
fn figures_skip_a_scenario_without_aggregates_and_do_not_hang() {
    let r = degenerate();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().to_path_buf();
    let figs = common::within(120, move || figures::write_all(&r, &path)).unwrap();
    assert!(
        figs.notes.iter().any(|n| n.contains("ghost")),
        "{:?}",
        figs.notes
    );
    assert!(!figs.written.is_empty());
}

#[test]
fn figures_do_not_hang_on_extreme_values() {
    for x in [1.7e308, f64::INFINITY, f64::NAN, -1e300, 0.0] {
        let mut r = toy_results();
        for a in &mut r.aggregates {
            a.co2_kg.mean = x;
            a.co2_kg.std = x;
            a.quality.mean = x;
            a.quality.std = x;
        }
        for c in &mut r.convergence {
            c.quality.iter_mut().for_each(|q| *q = x);
        }
        r.gate.push(GateRecord {
            scenario: "toy".into(),
            seed: 0,
            verdict: "block".into(),
            statistics: vec![GateStatistic {
                name: "mmd2".into(),
                value: x,
                threshold: Some(x),
                flagged: true,
            }],
            reasons: vec![],
            transfer_hurt: None,
            subject: String::new(),
        });
        r.convergence.push(ConvergenceCurve {
            scenario: "toy".into(),
            strategy: Toy::BASELINE.into(),
            seed: 0,
            metric: Metric::R2,
            quality: vec![x, x, x],
        });
        let out = tempfile::tempdir().unwrap();
        let path = out.path().to_path_buf();
        let res = common::within(120, move || figures::write_all(&r, &path));
        assert!(res.is_ok(), "{x}: {:?}", res.err());
    }
}
