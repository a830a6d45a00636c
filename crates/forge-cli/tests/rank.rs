//! End-to-end tests of `forge rank` with the real binary, on forge-models' tiny fixtures with a
//! word-level tokenizer written by the test (the fixtures have no tokenizer).

mod common;

use common::{
    assert_one_line_error, forge, model_with_tokenizer, root, stderr, stdout, target_tsv,
};

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
