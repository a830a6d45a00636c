//! The transfer gate on a real domain split (diabetes: younger -> older patients) and on a harmful source
//! (the same source with its labels sign-flipped), printed as JSON-able decisions.
//!
//! `cargo run -p forge-safety --example gate`

use forge_data::{datasets_dir, diabetes, Budget};
use forge_safety::{
    gate_linear, should_transfer, GateConfig, LinearTransfer, Score, ValidateConfig,
};

fn main() -> anyhow::Result<()> {
    let split = diabetes(&datasets_dir())?.standardized()?;
    let few = split.few_shot(0.5, Budget::Count(80), 7)?;
    let mut cfg = GateConfig::default().with_seed(7);
    cfg.validation = ValidateConfig {
        folds: 10,
        seed: 7,
        ..ValidateConfig::with_score(Score::NegMse)
    };

    // Features only: how different are the two age groups?
    let shift = should_transfer(&few.source.x, &few.target_train.x, &cfg)?;
    println!("shift-only verdict: {:?}", shift.verdict);
    for c in &shift.checks {
        println!(
            "  {:<28} {:>9.4}  ({} with threshold {})  passed: {}",
            c.name, c.value, c.rule, c.threshold, c.passed
        );
    }

    // With labels: does regularized transfer beat target-only ridge on held-out target folds?
    let params = LinearTransfer {
        transfer_lam: 1000.0,
        ..Default::default()
    };
    let (t, s) = (&few.target_train, &few.source);
    let benign = gate_linear(&s.x, &s.y, &t.x, &t.y, &params, &cfg)?;
    println!("\nyounger -> older: {:?}", benign.verdict);
    for r in &benign.reasons {
        println!("  - {r}");
    }
    let flipped = gate_linear(&s.x, &s.y.neg()?, &t.x, &t.y, &params, &cfg)?;
    println!("\nyounger with y -> -y -> older: {:?}", flipped.verdict);
    for r in &flipped.reasons {
        println!("  - {r}");
    }
    println!("\nJSON of the decision (first 300 characters):");
    let json = serde_json::to_string(&flipped)?;
    println!("{}...", &json[..json.len().min(300)]);
    Ok(())
}
