//! The Forge side of the side-by-side comparison with CodeCarbon 3.3
//! (`scripts/compare_codecarbon.py` runs this binary inside a CodeCarbon tracker).
//!
//! Runs a single-thread busy loop for `SECONDS` while tracking it with forge-carbon, appends
//! the record to `OUT_DIR/emissions.csv` (+ `emissions.jsonl`) and prints the record as one JSON
//! line on stdout.
//!
//! ```text
//! cargo run --release -p forge-carbon --example codecarbon_side_by_side -- SECONDS MODE [TDP_W] [OUT_DIR]
//!   MODE = process | machine; TDP_W = full-load power of all logical CPUs (as CodeCarbon's
//!   force_cpu_power); OUT_DIR defaults to target/carbon-compare
//! ```
//! Settings shared with the CodeCarbon side: country USA, PUE 1, 1 s sampling.

use std::time::{Duration, Instant};

use forge_carbon::{CarbonConfig, CarbonTracker, TrackingMode};

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).map_or(Ok(10.0), |s| s.parse())?;
    let mode: TrackingMode = args
        .get(2)
        .map_or(Ok(TrackingMode::Process), |s| s.parse())?;
    let tdp_w: Option<f64> = match args.get(3).map(String::as_str) {
        None | Some("") | Some("-") => None,
        Some(s) => Some(s.parse()?),
    };
    let out = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "target/carbon-compare".into());
    let config = CarbonConfig {
        project_name: format!("forge-{mode}"),
        country_iso: "USA".into(),
        tracking_mode: mode,
        tdp_w,
        sample_interval_ms: 1000,
        use_nvml: false,
        ..CarbonConfig::default()
    }
    .output_dir(out);
    let mut tracker = CarbonTracker::new(config)?;
    tracker.start()?;
    let t0 = Instant::now();
    let mut x = 1u64;
    while t0.elapsed() < Duration::from_secs_f64(seconds) {
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
    }
    std::hint::black_box(x);
    let e = tracker.stop()?;
    println!("{}", serde_json::to_string(&e)?);
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
