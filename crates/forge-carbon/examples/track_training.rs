//! Tracking a (simulated) training loop: per-epoch emissions, carbontracker's prediction after
//! the first epoch, CodeCarbon-compatible emissions.csv, and a comparison of two runs.
//!
//! ```text
//! cargo run -p forge-carbon --example track_training -- [output_dir]
//! ```

use forge_carbon::{compare_emissions, CarbonConfig, CarbonTracker, Emissions, EnergyPredictor};

/// Stand-in for one epoch of training: `units` x ~1 ms of CPU work.
fn epoch(units: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..units * 400_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    x
}

fn train(name: &str, cfg: &CarbonConfig, epochs: usize, units: u64) -> anyhow::Result<Emissions> {
    let mut predictor = EnergyPredictor::new(epochs)?;
    let mut per_epoch = CarbonTracker::new(CarbonConfig {
        output_dir: None,
        ..cfg.clone()
    })?;
    let mut whole = CarbonTracker::new(cfg.clone().project(name))?;
    whole.start()?;
    for ep in 0..epochs {
        per_epoch.start()?;
        std::hint::black_box(epoch(units));
        let e = per_epoch.stop()?;
        predictor.record_emissions(&e)?;
        if ep == 0 {
            let p = predictor.predict().expect("one epoch recorded");
            println!(
                "[{name}] after epoch 1: predicted total {:.3e} kWh, {:.3e} kg CO2 over {} epochs ({:.2} s)",
                p.predicted_total.energy_kwh, p.predicted_total.emissions_kg, epochs, p.predicted_total.duration_s
            );
        }
    }
    let total = whole.stop()?;
    println!(
        "[{name}] measured: {:.3e} kWh, {:.3e} kg CO2 in {:.2} s (cpu: {}, {:.2} W/thread via {})",
        total.energy_kwh,
        total.emissions_kg,
        total.duration_s,
        total.cpu_method,
        total.cpu_w_per_thread.unwrap_or(f64::NAN),
        total.tdp_source.as_deref().unwrap_or("RAPL")
    );
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let out = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("forge-carbon-example"));
    let cfg = CarbonConfig::from_env()?.output_dir(&out);
    let full = train("full-fine-tune", &cfg, 4, 300)?;
    let lora = train("lora", &cfg, 4, 80)?;
    let cmp = compare_emissions(&full, &[("lora", &lora)]);
    println!("\n{}", cmp.to_markdown());
    println!(
        "records appended to {}/emissions.csv and emissions.jsonl",
        out.display()
    );
    Ok(())
}

/// Library warnings (fallbacks, torn lines, unknown countries) go to stderr; `RUST_LOG` overrides.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
