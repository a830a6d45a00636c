//! Shared helpers of the end-to-end tests: the real `forge` binary and the repository paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `forge` as built by cargo for this test run.
pub fn forge() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_forge"));
    c.env_remove("RUST_LOG").env("CI", "true");
    for v in [
        "FORGE_PUE",
        "FORGE_CARBON_INTENSITY",
        "FORGE_COUNTRY",
        "FORGE_CPU_TDP_W",
    ] {
        c.env_remove(v);
    }
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the shipped `datasets/`.
pub fn dataset(name: &str) -> PathBuf {
    root().join("datasets").join(name)
}

/// stderr of an output, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout of an output, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that stderr is exactly one line starting with `error:` and containing every `needle`.
pub fn assert_one_line_error(o: &std::process::Output, needles: &[&str]) {
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error {:?} does not name {n:?}",
            lines[0]
        );
    }
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
}

/// A copy of a tiny fixture model with a word-level `tokenizer.json` over its 64-token vocabulary.
pub fn model_with_tokenizer(name: &str, dir: &Path) -> PathBuf {
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
pub fn target_tsv(dir: &Path) -> PathBuf {
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
