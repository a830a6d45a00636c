//! `cargo xtask story ml [--include-bad-source] [--scenario NAME]`: a short narrative through
//! one real domain shift (default: diabetes, younger -> older patients), the low-carbon warm
//! start, and the gate refusing the same source with its relation to the label reversed.

use anyhow::{bail, Context, Result};
use forge_bench::classical::{ClassicalScenario, ClassicalStrategy};
use forge_bench::report::co2_unit;
use forge_bench::scenario::{Mode, Scenario, StrategyOutcome, Trial};
use forge_bench::schema::GateRecord;
use std::path::PathBuf;

fn co2(o: &StrategyOutcome) -> String {
    let (f, u) = co2_unit(o.training.co2_kg);
    format!("{:.3} {u} CO2e", o.training.co2_kg * f)
}

fn gate_lines(g: &GateRecord) {
    for s in &g.statistics {
        println!(
            "      {:<28} {:>9.4}  (threshold {:>7.3}){}",
            s.name,
            s.value,
            s.threshold.unwrap_or(f64::NAN),
            if s.flagged { "  <- flagged" } else { "" }
        );
    }
    println!("    verdict: {}", g.verdict.to_uppercase());
    for r in &g.reasons {
        println!("      - {r}");
    }
    println!(
        "    => {}",
        match g.verdict.as_str() {
            "transfer" => "the source helps on held-out target folds: transfer.",
            "block" => "transfer from this source does worse than target-only on held-out target folds: REFUSED.",
            _ => "the domains differ (that is why we transfer) and held-out target folds show no harm: transfer, with care.",
        }
    );
}

pub fn run(
    which: &str,
    scenario: &str,
    seed: u64,
    include_bad: bool,
    data_dir: Option<PathBuf>,
) -> Result<()> {
    if which != "ml" {
        bail!("unknown story {which:?}; available: ml");
    }
    let data_dir = data_dir.unwrap_or_else(forge_bench::default_data_dir);
    let good = ClassicalScenario::by_name(scenario)
        .with_context(|| format!("unknown scenario {scenario:?}: diabetes, wine or housing"))?;
    let ctx = forge_bench::context(Mode::Standard, data_dir)?.with_policy(good.measure_policy());

    println!("== 1. A real domain shift");
    println!("   {}", good.description());
    let mut trial: Box<dyn Trial> = good.trial(seed, &ctx)?;
    let src = trial.source_cost().unwrap_or_default();
    let (f, u) = co2_unit(src.co2_kg);
    println!(
        "   A ridge model is trained once on the source domain (cost {:.3} {u} CO2e, {:.2} ms): the",
        src.co2_kg * f,
        src.wall_time_s * 1e3
    );
    println!("   shared, already-paid 'pretrained' model.");
    let source_only = trial.run("source-only", &ctx)?;
    let count = |k: &str| source_only.extra_metrics.get(k).copied().unwrap_or(0.0);
    println!(
        "   The target has {:.0} labelled training rows ({:.0} more held out for testing).",
        count("n_target_train"),
        count("n_target_test")
    );
    println!(
        "   Applied to the target as is, it scores R2 = {:.3}.",
        source_only.quality
    );

    println!("\n== 2. Should we transfer? The gate looks at the data first");
    let gated = trial.run("gated", &ctx)?;
    let g = trial.gate(&ctx)?.context("gate decision")?;
    gate_lines(&g);
    println!("   (the gate itself cost {})", co2(&gated));

    println!("\n== 3. Training on the target: from scratch vs from the source model");
    let scratch = trial.run(ClassicalStrategy::ScratchSgd.name(), &ctx)?;
    let warm = trial.run(ClassicalStrategy::WarmStartSgd.name(), &ctx)?;
    let reg_t = trial.run("regularized", &ctx)?;
    let target = trial.run("target-only", &ctx)?;
    println!(
        "   from scratch (SGD, zero init):   R2 {:.3} after {:>3} epochs, {:>5} steps, {}",
        scratch.quality,
        scratch.epochs.unwrap_or(0),
        scratch.gradient_steps,
        co2(&scratch)
    );
    println!(
        "   warm start from source (SGD):    R2 {:.3} after {:>3} epochs, {:>5} steps, {}",
        warm.quality,
        warm.epochs.unwrap_or(0),
        warm.gradient_steps,
        co2(&warm)
    );
    println!(
        "   regularized transfer (closed):   R2 {:.3}, {}",
        reg_t.quality,
        co2(&reg_t)
    );
    println!(
        "   target-only ridge (closed):      R2 {:.3}, {}",
        target.quality,
        co2(&target)
    );
    let red = forge_bench::runner::reduction_pct(scratch.training.co2_kg, warm.training.co2_kg);
    println!(
        "   => the warm start needs {:.0}% fewer gradient steps and {:.0}% less CO2 for R2 {:+.3} vs scratch.",
        forge_bench::runner::reduction_pct(scratch.gradient_steps as f64, warm.gradient_steps as f64),
        red,
        warm.quality - scratch.quality
    );

    if include_bad {
        println!(
            "\n== 4. A harmful source: the same source domain, its relation to the label reversed"
        );
        let bad = good.reversed("reversed-source")?;
        let mut bt = bad.trial(seed, &ctx)?;
        let warm_bad = bt.run(ClassicalStrategy::WarmStartSgd.name(), &ctx)?;
        let reg_bad = bt.run("regularized", &ctx)?;
        let tgt = bt.run("target-only", &ctx)?;
        let gated_bad = bt.run("gated", &ctx)?;
        let g = bt.gate(&ctx)?.context("gate decision")?;
        gate_lines(&g);
        println!(
            "   Had we transferred anyway: regularized R2 {:.3}, warm start R2 {:.3} (target-only {:.3}).",
            reg_bad.quality, warm_bad.quality, tgt.quality
        );
        println!(
            "   With the gate: R2 {:.3} ({}).",
            gated_bad.quality,
            gated_bad.note.unwrap_or_default()
        );
    }
    println!(
        "\n{}",
        forge_bench::report::carbon_note_for(&ctx.meter.settings())
    );
    Ok(())
}
