//! Runs one classical scenario (California housing, north -> south) for two seeds with the real
//! forge-carbon meter and prints its per-method table.
//!
//! ```text
//! cargo run -p forge-bench --example one_scenario [-- SCENARIO]
//! ```
//! Scenarios: housing, wine, titanic, cancer, diabetes, harmful-source.

fn main() -> anyhow::Result<()> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "housing".to_string());
    let registry = forge_bench::registry()?;
    let ctx = forge_bench::context(forge_bench::Mode::Quick, forge_bench::default_data_dir())?;
    let plan = forge_bench::RunPlan {
        mode: forge_bench::Mode::Quick,
        seeds: vec![0, 1],
        scenarios: Some(vec![name]),
    };
    let results = forge_bench::run(&registry, &plan, &ctx, &mut forge_bench::runner::NoProgress)?;
    println!(
        "{}",
        forge_bench::report::headline_table(&results).to_text()
    );
    for t in forge_bench::report::method_tables(&results) {
        println!("{}", t.to_text());
    }
    println!(
        "{}",
        forge_bench::report::convergence_table(&results).to_text()
    );
    println!("{}", forge_bench::report::carbon_note(&results));
    Ok(())
}
