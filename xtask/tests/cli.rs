//! The xtask commands that read results refuse bad ones naming the field (issue 16): `gate`
//! passed a file whose every float was 1.7e308 and `readme` rewrote the README from empty
//! results; `figures` spun forever on a scenario without aggregates. The committed gate fails on
//! a broken transformer threshold (issue 13). Runs the built binary.

use forge_bench::scenario::{Meter, Mode, Registry, RunContext, Scenario, StrategyOutcome, Trial};
use forge_bench::schema::{CarbonSettings, Measurement, Metric, ResultsFile, StrategyKind};
use forge_bench::StrategySpec;
use std::path::Path;
use std::process::Command;

struct Fixed;
impl Meter for Fixed {
    fn measure(
        &self,
        f: &mut dyn FnMut() -> forge_bench::Result<()>,
    ) -> forge_bench::Result<Measurement> {
        f()?;
        Ok(Measurement {
            wall_time_s: 1e-3,
            total_kwh: 1e-9,
            co2_kg: 1e-9,
            repeats: 1,
            ..Default::default()
        })
    }
    fn settings(&self) -> CarbonSettings {
        CarbonSettings {
            pue: 1.0,
            ..Default::default()
        }
    }
}

fn toy() -> ResultsFile {
    let mut reg = Registry::new();
    reg.register(Box::new(forge_bench::example::Toy)).unwrap();
    let mut ctx = RunContext::new(Mode::Quick, std::sync::Arc::new(Fixed));
    ctx.min_measure_s = 0.0;
    let plan = forge_bench::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0, 1],
        scenarios: None,
    };
    forge_bench::run(&reg, &plan, &ctx, &mut forge_bench::runner::NoProgress).unwrap()
}

fn set_floats(v: &mut serde_json::Value, x: f64) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => *v = serde_json::json!(x),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|e| set_floats(e, x)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|e| set_floats(e, x)),
        _ => {}
    }
}

fn xtask(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

#[test]
fn gate_and_readme_refuse_absurd_and_empty_results_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let absurd = dir.path().join("absurd.json");
    let mut v = serde_json::to_value(toy()).unwrap();
    set_floats(&mut v, 1.7e308);
    write(&absurd, &v);
    let thresholds = dir.path().join("t.json");
    std::fs::write(
        &thresholds,
        r#"{"quality_floors": {"toy": {"toy-transfer": 0.5}}}"#,
    )
    .unwrap();
    let a = absurd.to_str().unwrap();
    let (ok, text) = xtask(&[
        "gate",
        "--results",
        a,
        "--thresholds",
        thresholds.to_str().unwrap(),
    ]);
    assert!(!ok, "gate passed on absurd results: {text}");
    assert!(
        text.contains("run.min_measure_s") && text.contains("1.7e308"),
        "{text}"
    );

    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let before = std::fs::read_to_string(&readme).unwrap();
    let (ok, text) = xtask(&["readme", "--results", a]);
    assert!(!ok, "{text}");
    assert!(text.contains("1.7e308"), "{text}");

    let empty = dir.path().join("empty.json");
    let mut v = serde_json::to_value(toy()).unwrap();
    v["records"] = serde_json::json!([]);
    write(&empty, &v);
    let (ok, text) = xtask(&["readme", "--results", empty.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("field records"), "{text}");
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), before);

    // The good file passes the same gate.
    let good = dir.path().join("good.json");
    write(&good, &serde_json::to_value(toy()).unwrap());
    let (ok, text) = xtask(&[
        "gate",
        "--results",
        good.to_str().unwrap(),
        "--thresholds",
        thresholds.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn figures_skip_a_scenario_without_aggregates_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ghost.json");
    let mut r = toy();
    r.run.scenarios.push("ghost".into());
    write(&p, &serde_json::to_value(&r).unwrap());
    let out = dir.path().join("figs");
    let (ok, text) = xtask(&[
        "figures",
        "--results",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("\"ghost\" has no aggregates"), "{text}");
    assert!(out.join("co2_per_strategy.png").is_file());
}

#[test]
fn list_prints_every_registered_scenario() {
    let (ok, text) = xtask(&["demo", "--list"]);
    assert!(ok, "{text}");
    for name in forge_bench::registry().unwrap().names() {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
    }
}

#[test]
fn demo_prints_first_and_keeps_the_results_when_the_output_path_fails() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let wanted = blocker.join("results.json");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "demo",
            "--quick",
            "--scenario",
            "diabetes",
            "--seeds",
            "1",
            "--save-json",
        ])
        .arg(&wanted)
        .env("CI", "true")
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Transfer vs baseline"), "{stdout}");
    assert!(stderr.contains("instead"), "{stderr}");
    let saved: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(saved.len(), 1, "{stderr}");
    forge_bench::io::read_results(&saved[0].path()).unwrap();
    assert!(dir
        .path()
        .join("target/forge-results/latest.json")
        .is_file());
    // --json prints the results, and only them, to stdout.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "demo",
            "--quick",
            "--scenario",
            "diabetes",
            "--seeds",
            "1",
            "--json",
        ])
        .env("CI", "true")
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["run"]["scenarios"][0], "diabetes");
}

/// What one seed of the transformer smoke (`demo --quick --scenario sst2-full-vs-lora --seeds 1`
/// on all-MiniLM-L6-v2) measured, per strategy: accuracy, trainable parameters, and the share of
/// full fine-tuning's parameters and checkpoint bytes. See xtask/gates.json.
const SMOKE: [(&str, StrategyKind, f64, u64, f64, f64); 3] = [
    (
        "full-ft",
        StrategyKind::Baseline,
        0.580,
        22_713_986,
        100.0,
        100.0,
    ),
    (
        "lora-r4",
        StrategyKind::Transfer,
        0.530,
        185_474,
        0.817,
        0.821,
    ),
    (
        "lora-r8",
        StrategyKind::Transfer,
        0.525,
        222_338,
        0.979,
        0.983,
    ),
];

/// A stand-in with the transformer scenario's name and strategies and the smoke's numbers, so
/// that the committed floors are checked without a model.
struct SmokeLike;
struct SmokeTrial;

impl Scenario for SmokeLike {
    fn name(&self) -> &str {
        forge_bench::transformer::SST2_FULL_VS_LORA
    }
    fn description(&self) -> &str {
        "the smoke's numbers"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        SMOKE
            .iter()
            .map(|s| StrategySpec::new(s.0, s.1, false, s.0))
            .collect()
    }
    fn headline_strategy(&self) -> &str {
        "lora-r4"
    }
    fn trial(&self, _seed: u64, _ctx: &RunContext) -> forge_bench::Result<Box<dyn Trial>> {
        Ok(Box::new(SmokeTrial))
    }
}

impl Trial for SmokeTrial {
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> forge_bench::Result<StrategyOutcome> {
        let s = SMOKE.iter().find(|s| s.0 == strategy).unwrap();
        let ((), training) = ctx.measure_once(|| Ok(()))?;
        Ok(StrategyOutcome {
            quality: s.2,
            extra_metrics: [("params_pct_full", s.4), ("storage_pct_full", s.5)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
            trainable_params: s.3,
            gradient_steps: 25,
            epochs: Some(1),
            training,
            note: None,
            config: Default::default(),
        })
    }
    fn source_cost(&self) -> Option<Measurement> {
        None
    }
}

fn smoke_like() -> ResultsFile {
    let mut reg = Registry::new();
    reg.register(Box::new(SmokeLike)).unwrap();
    let mut ctx = RunContext::new(Mode::Quick, std::sync::Arc::new(Fixed));
    ctx.min_measure_s = 0.0;
    let plan = forge_bench::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: None,
    };
    forge_bench::run(&reg, &plan, &ctx, &mut forge_bench::runner::NoProgress).unwrap()
}

fn gate_committed(dir: &Path, name: &str, r: &ResultsFile) -> (bool, String) {
    let p = dir.join(name);
    write(&p, &serde_json::to_value(r).unwrap());
    xtask(&[
        "gate",
        "--results",
        p.to_str().unwrap(),
        "--thresholds",
        "xtask/gates.json",
    ])
}

#[test]
fn committed_gate_fails_on_a_broken_transformer_threshold() {
    let dir = tempfile::tempdir().unwrap();
    // The smoke's own numbers pass the committed floors and ceilings.
    let (ok, text) = gate_committed(dir.path(), "smoke.json", &smoke_like());
    assert!(ok, "{text}");
    // LoRA at chance accuracy breaks its floor, named.
    let mut broken = smoke_like();
    for r in broken
        .records
        .iter_mut()
        .filter(|r| r.strategy == "lora-r4")
    {
        r.quality = 0.5;
    }
    broken.aggregates = forge_bench::runner::aggregate(&broken.records);
    let (ok, text) = gate_committed(dir.path(), "chance.json", &broken);
    assert!(!ok, "the gate passed a LoRA at chance: {text}");
    assert!(
        text.contains("sst2-full-vs-lora / lora-r4") && text.contains("below the floor"),
        "{text}"
    );
    // An adapter as large as the whole checkpoint breaks the storage ceiling.
    let mut fat = smoke_like();
    for r in fat.records.iter_mut().filter(|r| r.strategy == "lora-r4") {
        r.extra_metrics.insert("storage_pct_full".into(), 100.0);
    }
    let (ok, text) = gate_committed(dir.path(), "fat.json", &fat);
    assert!(!ok, "{text}");
    assert!(
        text.contains("storage_pct_full") && text.contains("above the ceiling"),
        "{text}"
    );
}
