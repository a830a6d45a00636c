//! The classical scenarios on the shipped real data (one seed, quick mode, fake meter).

use forge_bench::classical::ClassicalStrategy;
use forge_bench::runner;
use forge_bench::scenario::{Meter, Mode, RunContext};
use forge_bench::schema::{CarbonSettings, Measurement, StrategyKind};

struct FakeMeter;
impl Meter for FakeMeter {
    fn measure(
        &self,
        f: &mut dyn FnMut() -> forge_bench::Result<()>,
    ) -> forge_bench::Result<Measurement> {
        let t = std::time::Instant::now();
        f()?;
        let s = t.elapsed().as_secs_f64();
        Ok(Measurement {
            wall_time_s: s,
            total_kwh: s,
            co2_kg: s,
            repeats: 1,
            ..Default::default()
        })
    }
    fn settings(&self) -> CarbonSettings {
        CarbonSettings::default()
    }
}

fn fake_ctx() -> RunContext {
    let mut c = RunContext::new(Mode::Quick, std::sync::Arc::new(FakeMeter));
    c.min_measure_s = 0.0;
    c.max_repeats = 1;
    c
}

#[test]
fn warm_start_saves_steps_and_the_gate_blocks_the_reversed_source() {
    let reg = forge_bench::registry().unwrap();
    // The classical scenarios, in order (the transformer ones need a model and text data).
    let classical: Vec<&str> = reg
        .names()
        .into_iter()
        .filter(|n| reg.get(n).is_some_and(|s| !s.requires().model))
        .collect();
    assert_eq!(
        classical,
        [
            "housing",
            "wine",
            "titanic",
            "cancer",
            "diabetes",
            "harmful-source"
        ]
    );
    let ctx = fake_ctx();
    let plan = runner::RunPlan {
        mode: Mode::Quick,
        seeds: vec![0],
        scenarios: Some(vec!["housing".into(), "harmful-source".into()]),
    };
    let r = runner::run(&reg, &plan, &ctx, &mut runner::NoProgress).unwrap();
    assert_eq!(r.records.len(), 2 * 10);
    let get = |sc: &str, st: &str| {
        r.records
            .iter()
            .find(|x| x.scenario == sc && x.strategy == st)
            .unwrap()
    };
    // Exactly one baseline per scenario, and it is the from-scratch SGD.
    assert_eq!(
        r.records
            .iter()
            .filter(|x| x.kind == StrategyKind::Baseline)
            .count(),
        2
    );
    let scratch = get("housing", ClassicalStrategy::ScratchSgd.name());
    let warm = get("housing", ClassicalStrategy::WarmStartSgd.name());
    // Same SGD, same stopping rule: the source initialisation needs far fewer steps and is
    // at least as good on the held-out south (R2).
    assert!(
        warm.gradient_steps * 2 < scratch.gradient_steps,
        "{} vs {}",
        warm.gradient_steps,
        scratch.gradient_steps
    );
    assert!(
        warm.quality > scratch.quality,
        "{} vs {}",
        warm.quality,
        scratch.quality
    );
    assert_eq!(get("housing", "source-only").gradient_steps, 0);
    // The reversed source hurts the warm start and the gate blocks it; the gated strategy falls
    // back to the target-only fit (same quality).
    let bad_warm = get("harmful-source", ClassicalStrategy::WarmStartSgd.name());
    assert!(bad_warm.quality < get("harmful-source", "target-only").quality);
    let g = r
        .gate
        .iter()
        .find(|g| g.scenario == "harmful-source")
        .unwrap();
    assert_eq!(g.verdict, "block", "{:?}", g.reasons);
    let gated = get("harmful-source", "gated");
    assert!(gated.note.as_deref().unwrap_or("").contains("Block"));
    assert!((gated.quality - get("harmful-source", "target-only").quality).abs() < 1e-12);
    // Convergence curves exist for both SGD strategies, starting at epoch 0.
    assert_eq!(
        r.convergence
            .iter()
            .filter(|c| c.scenario == "housing")
            .count(),
        2
    );
    let s = r
        .convergence_summaries
        .iter()
        .find(|c| c.scenario == "housing")
        .unwrap();
    assert!(s.transfer_epochs.unwrap() < s.baseline_epochs.unwrap());
}

#[test]
fn unknown_scenario_is_a_typed_error() {
    let reg = forge_bench::registry().unwrap();
    let err = reg
        .select(Some(&["nope".to_string()]), Mode::Quick, &fake_ctx())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unknown scenario \"nope\""),
        "{err}"
    );
}
