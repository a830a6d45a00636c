//! Forward pass and training steps at DistilBERT-base dimensions (random init), batch 16 x seq 64.
//! Reference (PyTorch 2.15 + PEFT 0.21, 2 threads, same machine kind): forward 468 ms,
//! LoRA r4 step 956 ms, full fine-tuning step 1,565 ms.

use candle_core::Device;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use criterion::{criterion_group, criterion_main, Criterion};
use forge_lora::{trainable_vars, LoraConfig, LoraInjector};
use forge_models::perf::{synthetic_batch, tune_allocator};
use forge_models::{
    train_step, DistilBertConfig, DistilBertForSequenceClassification, SequenceClassifier,
};

fn bench(c: &mut Criterion) {
    tune_allocator();
    let dev = Device::Cpu;
    let cfg = DistilBertConfig::default();
    let (ids, mask, labels) = synthetic_batch(16, 64, cfg.vocab_size, 2, 0, &dev).unwrap();
    let mut g = c.benchmark_group("cpu_distilbert_base_b16_s64");
    g.sample_size(10);

    let mut full = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev).unwrap();
    g.bench_function("forward", |b| {
        b.iter(|| forge_lora::no_grad(|| full.forward(&ids, Some(&mask))).unwrap())
    });
    full.set_training(true);
    let mut opt = AdamW::new(
        trainable_vars(&mut full),
        ParamsAdamW {
            lr: 2e-5,
            ..Default::default()
        },
    )
    .unwrap();
    g.bench_function("full_ft_step", |b| {
        b.iter(|| train_step(&full, &mut opt, &ids, Some(&mask), &labels).unwrap())
    });
    drop(full);

    let mut lora = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev).unwrap();
    LoraInjector::new(LoraConfig::new(4, 8.0, &["q_lin", "v_lin"]).with_dropout(0.1))
        .unwrap()
        .inject(&mut lora)
        .unwrap();
    lora.set_training(true);
    let mut opt = AdamW::new(
        trainable_vars(&mut lora),
        ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )
    .unwrap();
    g.bench_function("lora_r4_qv_step", |b| {
        b.iter(|| train_step(&lora, &mut opt, &ids, Some(&mask), &labels).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
