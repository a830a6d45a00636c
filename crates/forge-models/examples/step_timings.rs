//! Print forward / training-step timings at DistilBERT-base dimensions (random init, no weights
//! needed), batch 16 x seq 64. `cargo run -p forge-models --release --example step_timings`.
//! Reference (PyTorch 2.15 + PEFT 0.21, 2 threads): forward 468 ms, LoRA r4 step 956 ms,
//! full fine-tuning step 1,565 ms.

use candle_core::Device;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use forge_lora::{trainable_vars, LoraConfig, LoraInjector};
use forge_models::perf::{synthetic_batch, tune_allocator};
use forge_models::{
    train_step, DistilBertConfig, DistilBertForSequenceClassification, SequenceClassifier,
};
use std::time::Instant;

fn time_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1000.0 / n as f64
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

    let mut m = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev)?;
    let fwd = time_ms(n, || {
        m.forward(&ids, Some(&mask)).unwrap();
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

    println!("| | Forge (ms) | PyTorch reference (ms) |");
    println!("|---|---|---|");
    println!("| forward (eval) | {fwd:.0} | 468 |");
    println!("| LoRA r4 q/v step | {lora:.0} | 956 |");
    println!("| full fine-tuning step | {full:.0} | 1,565 |");
    Ok(())
}
