//! End-to-end tests of `forge rank` with the real binary, on forge-models' tiny fixtures with a
//! word-level tokenizer written by the test (the fixtures have no tokenizer).

mod common;

use common::{assert_one_line_error, forge, root, stderr, stdout};
use std::path::{Path, PathBuf};

/// A copy of a tiny fixture model with a word-level `tokenizer.json` over its 64-token vocabulary.
fn model_with_tokenizer(name: &str, dir: &Path) -> PathBuf {
    let src = root().join("crates/forge-models/tests/fixtures").join(name);
    let dst = dir.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for i in 4..64 {
        vocab.insert(format!("w{i}"), i.into());
    }
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    std::fs::write(dst.join("tokenizer.json"), tok.to_string()).unwrap();
    dst
}

/// 48 texts: class "neg" uses words w4..w19, class "pos" words w40..w55.
fn target_tsv(dir: &Path) -> PathBuf {
    let mut s = String::from("sentence\tlabel\n");
    for i in 0..48u32 {
        let (base, label) = if i % 2 == 0 { (4, "neg") } else { (40, "pos") };
        let words: Vec<String> = (0..6)
            .map(|k| format!("w{}", base + (i * 7 + k * 3) % 16))
            .collect();
        s += &format!("{}\t{label}\n", words.join(" "));
    }
    let p = dir.join("target.tsv");
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn ranks_two_models_with_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let a = model_with_tokenizer("tiny-distilbert", dir.path());
    let b = model_with_tokenizer("tiny-bert", dir.path());
    let o = forge()
        .args(["--json", "rank", "--permutations", "49", "--target"])
        .arg(target_tsv(dir.path()))
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let code = o.status.code().unwrap();
    assert!((0..=2).contains(&code), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["exit_code"], code);
    assert_eq!(v["classes"], serde_json::json!(["neg", "pos"]));
    let r = v["ranking"]["ranking"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["rank"], 1);
    assert_eq!(r[1]["rank"], 2);
    assert!(r[0]["logme"].is_object());
    // both fixtures were saved with a classification head: LEEP is computed for each
    assert!(r.iter().all(|c| c["leep"].is_object()), "{v}");
    assert_eq!(v["ranking"]["n"], 48);
}

#[test]
fn rank_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let a = model_with_tokenizer("tiny-distilbert", dir.path());
    let tsv = target_tsv(dir.path());
    // a model folder that does not exist
    let o = forge()
        .args(["rank", "--target"])
        .arg(&tsv)
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["nope"]);
    // a model without tokenizer
    let o = forge()
        .args(["rank", "--target"])
        .arg(&tsv)
        .arg(root().join("crates/forge-models/tests/fixtures/tiny-bert"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["tokenizer.json"]);
    // unknown label column
    let o = forge()
        .args(["rank", "--label-col", "stars", "--target"])
        .arg(&tsv)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["\"stars\""]);
    // a single class
    let one = dir.path().join("one.tsv");
    std::fs::write(&one, "sentence\tlabel\nw4 w5\tpos\nw6 w7\tpos\n").unwrap();
    let o = forge()
        .args(["rank", "--target"])
        .arg(&one)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["single label"]);
    // missing target file
    let o = forge()
        .args(["rank", "--target", "missing.tsv"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["target TSV not found", "missing.tsv"]);
}
