//! `cargo xtask story ml [--include-bad-source] [--scenario NAME]`: a short narrative through
//! one real domain shift (default: diabetes, younger -> older patients), the low-carbon warm
//! start, and the gate refusing the same source with its relation to the label reversed.
//!
//! `cargo xtask story dl [--include-bad-source] [--standard]`: the deep-learning half. A
//! pretrained encoder fine-tuned on SST-2 in full and with LoRA (parameters, storage, accuracy,
//! CO2); then a second task, AG News, where the encoder gate ranks the candidate sources before
//! any training (with `--include-bad-source` a random-init encoder among them, refused, and
//! trained anyway to show what that would have cost); then the impact of the saving at scale.

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
        bail!("unknown story {which:?}; available: ml, dl");
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

fn storage(o: &StrategyOutcome) -> String {
    forge_bench::report::count(o.extra_metrics.get("storage_bytes").copied().unwrap_or(0.0))
}

/// `story dl`: see the module docs.
pub fn run_dl(
    seed: u64,
    include_bad: bool,
    standard: bool,
    model: Option<String>,
    text_data_dir: Option<PathBuf>,
) -> Result<()> {
    use forge_bench::transformer::{DlGate, Sst2FullVsLora};
    let mode = if standard {
        Mode::Standard
    } else {
        Mode::Quick
    };
    let mut ctx = forge_bench::context(mode, forge_bench::default_data_dir())?;
    let model = model.unwrap_or_else(|| forge_bench::catalog::DEFAULT_MODEL.to_string());
    ctx.model_dir = Some(
        forge_bench::catalog::resolve_model(&model)
            .with_context(|| "story dl needs a transformer model (--model / FORGE_MODEL)")?,
    );
    ctx.model_id = Some(model.clone());
    ctx.text_data_dir = forge_bench::catalog::resolve_text_data_dir(text_data_dir)?;
    if ctx.text_data_dir.is_none() {
        bail!("story dl needs the text data sets: set --text-data-dir / FORGE_TEXT_DATA_DIR (sst2/, ag_news/)");
    }
    let sizes = forge_bench::transformer::TextSizes::for_mode(mode);

    println!("== 1. A pretrained encoder and a new task");
    println!(
        "   {model} gets a new 2-class head for SST-2 sentiment: {} training sentences, {} epoch(s){}.",
        sizes.n_train,
        sizes.epochs,
        if standard { "" } else { " (smoke size; --standard for the seed's 600 x 3)" }
    );

    println!("\n== 2. Fine-tune everything, or train a LoRA adapter?");
    let sc = Sst2FullVsLora::new();
    let ctx1 = ctx.with_policy(sc.measure_policy());
    let mut trial = sc.trial(seed, &ctx1)?;
    let full = trial.run("full-ft", &ctx1)?;
    let lora = trial.run("lora-r4", &ctx1)?;
    for (name, o) in [("full fine-tuning  ", &full), ("LoRA r4 q/v       ", &lora)] {
        println!(
            "   {name} acc {:.3}, {:>9} trainable parameters, {:>8} on disk, {:>7.1} s, {}",
            o.quality,
            forge_bench::report::count(o.trainable_params as f64),
            storage(o),
            o.training.wall_time_s,
            co2(o)
        );
    }
    let red = forge_bench::runner::reduction_pct(full.training.co2_kg, lora.training.co2_kg);
    println!(
        "   => LoRA trains {:.2}% of the parameters, stores {:.2}% of the bytes and emits {red:.0}% {} CO2, for acc {:+.3}.",
        100.0 * lora.trainable_params as f64 / full.trainable_params.max(1) as f64,
        100.0 * lora.extra_metrics.get("storage_bytes").copied().unwrap_or(0.0)
            / full.extra_metrics.get("storage_bytes").copied().unwrap_or(1.0).max(1.0),
        if red >= 0.0 { "less" } else { "MORE" },
        lora.quality - full.quality
    );

    println!("\n== 3. A second task, AG News: which source? The gate looks before training");
    let gate_sc = DlGate::new();
    let ctx2 = ctx.with_policy(gate_sc.measure_policy());
    let mut gt = gate_sc.trial(seed, &ctx2)?;
    let from_pre = gt.run("from-pretrained", &ctx2)?;
    let from_sst = gt.run("from-sst2", &ctx2)?;
    let bad = if include_bad {
        Some(gt.run("from-random-init", &ctx2)?)
    } else {
        None
    };
    let g = gt.gate(&ctx2)?.context("gate decision")?;
    let verdict = |o: &StrategyOutcome| {
        o.config
            .get("gate_verdict")
            .map_or_else(|| "?".to_string(), |v| v.to_string())
    };
    let rank = |o: &StrategyOutcome| o.extra_metrics.get("gate_rank").copied().unwrap_or(0.0);
    let gate_co2 = from_pre
        .extra_metrics
        .get("gate_co2_kg")
        .copied()
        .unwrap_or(0.0);
    let (f, u) = co2_unit(gate_co2);
    println!(
        "   Candidates ranked on the labelled AG News sentences (LogME vs a shuffled-label null), cost {:.3} {u} CO2e:",
        gate_co2 * f
    );
    println!(
        "     #{:.0} pretrained encoder          {}",
        rank(&from_pre),
        verdict(&from_pre)
    );
    println!(
        "     #{:.0} SST-2 fine-tuned encoder    {}",
        rank(&from_sst),
        verdict(&from_sst)
    );
    if include_bad {
        println!(
            "     #{:.0} random-init encoder         {}",
            bad.as_ref().map_or(0.0, rank),
            bad.as_ref().map_or_else(|| "?".to_string(), verdict)
        );
        for st in g.statistics.iter().filter(|st| st.flagged) {
            println!(
                "        {:<24} {:>9.4}  (threshold {:.3})  <- flagged",
                st.name,
                st.value,
                st.threshold.unwrap_or(f64::NAN)
            );
        }
        for r in &g.reasons {
            println!("        - {r}");
        }
    }
    println!(
        "   Fine-tuned on AG News: from pretrained acc {:.3} ({}), from SST-2 acc {:.3} ({}).",
        from_pre.quality,
        co2(&from_pre),
        from_sst.quality,
        co2(&from_sst)
    );
    if let Some(b) = &bad {
        println!(
            "   The refused random-init encoder, trained anyway: acc {:.3} for {} ({:.1} s): the gate's {:.3} {u} would have saved all of it.",
            b.quality,
            co2(b),
            b.training.wall_time_s,
            gate_co2 * f
        );
    }

    println!("\n== 4. At scale");
    let saved = full.training.co2_kg - lora.training.co2_kg;
    let year = saved * forge_bench::report::EXPERIMENTS_PER_YEAR;
    let eq = forge_carbon::equivalents(year.max(0.0));
    println!(
        "   {:.0} experiments a year with LoRA r4 instead of full fine-tuning: {year:.3} kg CO2e saved = {:.1} km driven = {:.1} tree-months (this run's numbers).",
        forge_bench::report::EXPERIMENTS_PER_YEAR,
        eq.km_driven,
        eq.tree_months
    );
    println!(
        "\n{}",
        forge_bench::report::carbon_note_for(&ctx.meter.settings())
    );
    Ok(())
}
