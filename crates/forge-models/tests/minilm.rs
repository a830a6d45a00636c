//! Real weights: all-MiniLM-L6-v2 mean-pooled embeddings equal sentence-transformers' (fixture
//! made by `fixtures/make_fixtures.py`). Runs with FORGE_REAL_MODEL_TESTS=1 and FORGE_MINILM_DIR.

use candle_core::{Device, Tensor};
use forge_models::{AnyEncoder, ModelFiles, TextTokenizer};
use std::path::PathBuf;

#[test]
fn minilm_embeddings_match_reference() {
    if std::env::var("FORGE_REAL_MODEL_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set FORGE_REAL_MODEL_TESTS=1 and FORGE_MINILM_DIR");
        return;
    }
    let dir =
        PathBuf::from(std::env::var("FORGE_MINILM_DIR").expect("FORGE_MINILM_DIR must be set"));
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-embeddings.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sentences: Vec<String> = serde_json::from_value(fixture["sentences"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(fixture["input_ids"].clone()).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(fixture["embeddings"].clone()).unwrap();
    let files = ModelFiles::from_dir(&dir).unwrap();
    let tok = TextTokenizer::from_file(files.tokenizer.as_ref().unwrap(), 128).unwrap();
    let texts: Vec<&str> = sentences.iter().map(|s| s.as_str()).collect();
    let enc = tok.encode_batch(&texts, &Device::Cpu).unwrap();
    let ids: Vec<Vec<u32>> = enc.input_ids.to_vec2().unwrap();
    assert_eq!(
        ids, want_ids,
        "tokenisation differs from transformers' (padding must be to the longest, not 128)"
    );
    let model = AnyEncoder::from_files(&files, &Device::Cpu).unwrap();
    let emb = model.embed(&enc.input_ids, &enc.attention_mask).unwrap();
    let want = Tensor::new(want, &Device::Cpu).unwrap();
    let d = (emb - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!("all-MiniLM-L6-v2 mean-pooled embeddings: max abs diff {d:.2e}");
    assert!(d <= 1e-4, "max abs diff {d}");
}
