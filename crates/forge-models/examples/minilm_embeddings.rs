//! Sentence embeddings (mean pooling) with all-MiniLM-L6-v2 from a local folder, and their
//! cosine similarities.
//!
//! `cargo run -p forge-models --example minilm_embeddings -- /path/to/all-minilm-l6-v2`
//! (or set FORGE_MINILM_DIR). A Hub id also works when online, e.g.
//! `sentence-transformers/all-MiniLM-L6-v2`.

use candle_core::Device;
use forge_models::{AnyEncoder, ModelFiles, TextTokenizer};

fn main() -> anyhow::Result<()> {
    let source = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("FORGE_MINILM_DIR").ok())
        .unwrap_or_else(|| "sentence-transformers/all-MiniLM-L6-v2".into());
    let files = ModelFiles::resolve(&source)?;
    let tokenizer_path = files
        .tokenizer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{} has no tokenizer.json", files.dir.display()))?;
    let tokenizer = TextTokenizer::from_file(&tokenizer_path, 128)?;
    let model = AnyEncoder::from_files(&files, &Device::Cpu)?;

    let sentences = [
        "Transfer learning reuses what a model has already learned.",
        "Fine-tuning adapts a pre-trained network to a new task.",
        "The cat sat on the mat.",
    ];
    let enc = tokenizer.encode_batch(&sentences, &Device::Cpu)?;
    let emb = model.embed(&enc.input_ids, &enc.attention_mask)?;
    let norms = emb.sqr()?.sum_keepdim(1)?.sqrt()?;
    let unit = emb.broadcast_div(&norms)?;
    let sims: Vec<Vec<f32>> = unit.matmul(&unit.t()?)?.to_vec2()?;
    println!("embeddings: {:?}", emb.dims());
    for (i, s) in sentences.iter().enumerate() {
        let row: Vec<String> = sims[i].iter().map(|v| format!("{v:.3}")).collect();
        println!("{:>60}  {}", s, row.join("  "));
    }
    Ok(())
}
