//! forge-ewc at DistilBERT-base dimensions (random init, 66M parameters), batch 16 x seq 64:
//! one Fisher batch (mini-batch estimator; per-sample empirical estimator on 4 samples), the EWC penalty
//! alone (value + backward over all parameters), and a full fine-tuning step with and without the
//! penalty (AdamW), so the penalty's overhead is read in one sitting.
//!
//! Run: `cargo bench -p forge-bench --bench ewc -- --warm-up-time 1 --measurement-time 3`

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use criterion::{criterion_group, criterion_main, Criterion};
use forge_ewc::{fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherEstimator, Targets};
use forge_lora::named_trainable;
use forge_models::perf::{synthetic_batch, tune_allocator};
use forge_models::{
    cross_entropy_loss, DistilBertConfig, DistilBertForSequenceClassification, SequenceClassifier,
};

const BATCH: usize = 16;
const SEQ: usize = 64;

fn bench(c: &mut Criterion) {
    tune_allocator();
    let dev = Device::Cpu;
    let cfg = DistilBertConfig::default();
    let (ids, mask, labels) = synthetic_batch(BATCH, SEQ, cfg.vocab_size, 2, 0, &dev).unwrap();
    let label_vec: Vec<usize> = labels
        .to_vec1::<u32>()
        .unwrap()
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let mut model = DistilBertForSequenceClassification::new_random(&cfg, 0, &dev).unwrap();
    let params = named_trainable(&mut model);
    let mut g = c.benchmark_group("cpu_distilbert_base_b16_s64_ewc");
    g.sample_size(10);

    model.set_training(false);
    let logits = |idx: &[usize]| {
        let rows = Tensor::new(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            &Device::Cpu,
        )?;
        model.forward(
            &ids.index_select(&rows, 0)?,
            Some(&mask.index_select(&rows, 0)?),
        )
    };
    let mut fisher = None;
    for (name, est) in [
        (
            "fisher_batch_estimator",
            FisherEstimator::Batch { batch_size: BATCH },
        ),
        // Per-sample estimators run the model once per sample (batch of 1): 4 samples keep the
        // bench short on a shared machine; the cost grows linearly with the sample count.
        ("fisher_empirical_4_samples", FisherEstimator::Empirical),
    ] {
        let mut fc = FisherConfig::new(est);
        if fc.estimator == FisherEstimator::Empirical {
            fc.max_samples = Some(4);
        }
        g.bench_function(name, |b| {
            b.iter(|| {
                fisher = Some(
                    fisher_diagonal(&params, Targets::Labels(&label_vec), logits, &fc).unwrap(),
                )
            })
        });
    }
    let fisher = fisher.expect("the Fisher benches ran");
    let ewc = Ewc::new(&params, &fisher, EwcConfig::new(100.0)).unwrap();

    g.bench_function("penalty_forward_backward", |b| {
        b.iter(|| ewc.penalty().unwrap().backward().unwrap())
    });

    model.set_training(true);
    let vars = params.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 2e-5,
            ..Default::default()
        },
    )
    .unwrap();
    for with_ewc in [false, true] {
        let name = if with_ewc {
            "full_ft_step_with_ewc"
        } else {
            "full_ft_step_plain"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let logits = model.forward(&ids, Some(&mask)).unwrap();
                let mut loss = cross_entropy_loss(&logits, &labels).unwrap();
                if with_ewc {
                    loss = (loss + ewc.penalty().unwrap()).unwrap();
                }
                opt.backward_step(&loss).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
