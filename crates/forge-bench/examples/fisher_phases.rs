//! Times the two halves of a training step apart: the forward pass (with gradient tracking, to
//! the loss) and candle's backward pass, at the bench's model dimensions (random init, batch
//! 16 x 64, evaluation mode as the Fisher batch runs it). Used to measure the vendored
//! candle-core's backward patch (vendor/candle-core/FORGE-PATCH.md).
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p forge-bench --example fisher_phases -- minilm 8
//! ```
//! Arguments: `minilm` (default) or `distilbert-base`, then the number of iterations (6); the
//! first iteration warms up and is not printed.

use std::time::Instant;

use candle_core::Device;
use forge_bench::speed::BenchModel;
use forge_models::{AnyClassifier, ModelConfig, SequenceClassifier};

fn main() -> anyhow::Result<()> {
    forge_models::perf::tune_allocator();
    let mut args = std::env::args().skip(1);
    let model = match args.next().as_deref() {
        None | Some("minilm") => BenchModel::MiniLm,
        Some("distilbert-base") => BenchModel::DistilBertBase,
        Some(other) => anyhow::bail!("unknown model '{other}' (minilm, distilbert-base)"),
    };
    let iters: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 6,
    };
    let dev = Device::Cpu;
    let config = model.config();
    let vocab = match &config {
        ModelConfig::DistilBert(c) => c.vocab_size,
        ModelConfig::Bert(c) => c.vocab_size,
    };
    let (ids, mask, labels) = forge_models::perf::synthetic_batch(16, 64, vocab, 2, 0, &dev)?;
    let mut m = AnyClassifier::from_config(&config, 0, &dev)?;
    m.set_training(false);
    let vars = forge_lora::named_trainable(&mut m);
    println!("{} (batch 16 x 64, evaluation mode)", model.name());
    for it in 0..iters + 1 {
        let t0 = Instant::now();
        let logits = m.forward(&ids, Some(&mask))?;
        let loss = forge_models::train::cross_entropy_loss(&logits, &labels)?;
        loss.to_vec0::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        let missing = vars
            .iter()
            .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
            .count();
        anyhow::ensure!(missing == 0, "{missing} parameters got no gradient");
        if it > 0 {
            println!(
                "forward {:7.1} ms   backward {:7.1} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
