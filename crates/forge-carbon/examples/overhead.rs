//! Overhead of tracking: a CPU-bound loop of ~N seconds (default 10) run with and without a
//! tracker, alternating, R times (default 3). Reports wall and CPU time per variant.
//!
//! ```text
//! cargo run --release -p forge-carbon --example overhead -- [seconds] [repeats]
//! ```
//! Variants: `plain` (no tracker), `tracked` (the default tracker: on a machine without RAPL and
//! NVML no sampler thread runs), `tracked+sampler` (a mock GPU forces the background sampler
//! thread at the default 500 ms period, the worst case on machines with RAPL or power-only GPUs).

use std::sync::Arc;
use std::time::Instant;

use forge_carbon::{CarbonConfig, CarbonTracker, GpuBackend, LinuxProbe, ProcessProbe};

struct PowerOnlyGpu;
impl GpuBackend for PowerOnlyGpu {
    fn device_count(&self) -> usize {
        1
    }
    fn name(&self, _: usize) -> String {
        "mock".into()
    }
    fn total_energy_mj(&self, _: usize) -> Option<u64> {
        None
    }
    fn power_mw(&self, _: usize) -> Option<u32> {
        Some(100_000)
    }
}

fn work(iters: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    x
}

fn timed(f: impl FnOnce() -> u64) -> (f64, f64) {
    let p = LinuxProbe;
    let c0 = p.process_cpu_time_s();
    let t0 = Instant::now();
    std::hint::black_box(f());
    (t0.elapsed().as_secs_f64(), p.process_cpu_time_s() - c0)
}

fn main() -> anyhow::Result<()> {
    init_tracing();
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).map_or(Ok(10.0), |s| s.parse())?;
    let repeats: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    // Calibrate iterations for ~`seconds` of CPU time.
    let probe_iters = 50_000_000u64;
    let (_, cpu) = timed(|| work(probe_iters));
    let iters = (probe_iters as f64 * seconds / cpu.max(1e-6)) as u64;
    println!("loop: {iters} iterations (~{seconds} s), {repeats} repeats, alternating variants");

    let cfg = CarbonConfig {
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let mut plain = Vec::new();
    let mut tracked = Vec::new();
    let mut sampled = Vec::new();
    for _ in 0..repeats {
        plain.push(timed(|| work(iters)));
        let mut t = CarbonTracker::new(cfg.clone())?;
        tracked.push(timed(|| {
            t.start().unwrap();
            let r = work(iters);
            t.stop().unwrap();
            r
        }));
        let mut t = CarbonTracker::with_parts(
            cfg.clone(),
            Arc::new(LinuxProbe),
            Some(Box::new(PowerOnlyGpu)),
        )?;
        sampled.push(timed(|| {
            t.start().unwrap();
            let r = work(iters);
            t.stop().unwrap();
            r
        }));
    }
    let stats = |v: &[(f64, f64)]| {
        let n = v.len() as f64;
        let wall = v.iter().map(|x| x.0).sum::<f64>() / n;
        let cpu = v.iter().map(|x| x.1).sum::<f64>() / n;
        let wall_min = v.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
        (wall, cpu, wall_min)
    };
    // Fixed cost of one start/stop pair (what a millisecond-long tracked workload pays).
    let mut t = CarbonTracker::new(cfg.clone())?;
    let pairs = 10_000;
    let (wall, cpu) = timed(|| {
        for _ in 0..pairs {
            t.start().unwrap();
            std::hint::black_box(t.stop().unwrap());
        }
        0
    });
    println!(
        "start+stop pair: {:.2} us wall, {:.2} us CPU (mean of {pairs})",
        wall / pairs as f64 * 1e6,
        cpu / pairs as f64 * 1e6
    );
    let (pw, pc, pm) = stats(&plain);
    println!("| variant | mean wall (s) | min wall (s) | mean CPU (s) | wall overhead (mean) | wall overhead (min) | CPU overhead |");
    println!("|---|---|---|---|---|---|---|");
    println!("| plain | {pw:.4} | {pm:.4} | {pc:.4} | - | - | - |");
    for (name, v) in [("tracked", &tracked), ("tracked+sampler", &sampled)] {
        let (w, c, m) = stats(v);
        println!(
            "| {name} | {w:.4} | {m:.4} | {c:.4} | {:+.3}% | {:+.3}% | {:+.3}% |",
            100.0 * (w - pw) / pw,
            100.0 * (m - pm) / pm,
            100.0 * (c - pc) / pc
        );
    }
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
