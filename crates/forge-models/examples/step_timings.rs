//! Print forward / training-step timings at DistilBERT-base dimensions (random init, no weights
//! needed), batch 16 x seq 64. `cargo run -p forge-models --release --example step_timings`.
//! For side-by-side numbers against PyTorch use `cargo xtask bench --python PATH` (docs/speed.md).
//! Reference (PyTorch 2.15 + PEFT 0.21, 2 threads, an earlier measurement): forward 468 ms,
//! LoRA r4 step 956 ms, full fine-tuning step 1,565 ms.

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use forge_lora::{trainable_vars, LoraConfig, LoraInjector};
use forge_models::perf::{synthetic_batch, tune_allocator};
use forge_models::{
    train_step, DistilBertConfig, DistilBertForSequenceClassification, SequenceClassifier,
};
use std::time::Instant;

/// CPU seconds used by this process so far (user + system), to tell contention from cost.
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// (wall ms, process CPU ms) per call, after one warm-up call.
fn time_ms(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up
    let (t, c) = (Instant::now(), cpu_seconds());
    for _ in 0..n {
        f();
    }
    (
        t.elapsed().as_secs_f64() * 1000.0 / n as f64,
        (cpu_seconds() - c) * 1000.0 / n as f64,
    )
}

fn main() -> anyhow::Result<()> {
    let tuned = tune_allocator();
    let n: usize = std::env::var("STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dev = Device::Cpu;
    let cfg = DistilBertConfig::default();
    let (ids, mask, labels) = synthetic_batch(16, 64, cfg.vocab_size, 2, 0, &dev)?;
    println!(
        "DistilBERT-base, batch 16 x seq 64, mallopt tuned: {tuned}, {n} timed iterations each"
    );

    // calibration: the forward pass's dense matmuls alone (6 blocks x 4 [1024,768]x[768,768] and
    // 2 [1024,768]x[768,3072]-sized products), to separate machine load from model overhead
    let a = Tensor::ones((1024, 768), DType::F32, &dev)?;
    let w_sq = Tensor::ones((768, 768), DType::F32, &dev)?;
    let w_up = Tensor::ones((3072, 768), DType::F32, &dev)?;
    let h_up = Tensor::ones((1024, 3072), DType::F32, &dev)?;
    let gemm = time_ms(n, || {
        for _ in 0..6 {
            for _ in 0..4 {
                a.matmul(&w_sq.t().unwrap()).unwrap();
            }
            a.matmul(&w_up.t().unwrap()).unwrap();
            h_up.matmul(&w_up).unwrap();
        }
    });
    println!(
        "calibration: the forward's dense matmuls alone take {:.0} ms wall, {:.0} ms CPU",
        gemm.0, gemm.1
    );

    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev)?;
    // inference as PyTorch's torch.inference_mode(): no graph recorded
    let fwd = time_ms(n, || {
        forge_lora::no_grad(|| m.forward(&ids, Some(&mask))).unwrap();
    });
    m.set_training(true);
    let mut opt = AdamW::new(
        trainable_vars(&mut m),
        ParamsAdamW {
            lr: 2e-5,
            ..Default::default()
        },
    )?;
    let full = time_ms(n, || {
        train_step(&m, &mut opt, &ids, Some(&mask), &labels).unwrap();
    });
    drop((m, opt));

    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev)?;
    LoraInjector::new(LoraConfig::new(4, 8.0, &["q_lin", "v_lin"]).with_dropout(0.1))?
        .inject(&mut m)?;
    m.set_training(true);
    let mut opt = AdamW::new(
        trainable_vars(&mut m),
        ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let lora = time_ms(n, || {
        train_step(&m, &mut opt, &ids, Some(&mask), &labels).unwrap();
    });

    println!("| | Forge wall (ms) | Forge CPU (ms, all threads) | PyTorch reference wall (ms) |");
    println!("|---|---|---|---|");
    println!("| forward (eval) | {:.0} | {:.0} | 468 |", fwd.0, fwd.1);
    println!("| LoRA r4 q/v step | {:.0} | {:.0} | 956 |", lora.0, lora.1);
    println!(
        "| full fine-tuning step | {:.0} | {:.0} | 1,565 |",
        full.0, full.1
    );
    Ok(())
}
