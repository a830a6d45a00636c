//! Shared test helpers: a deterministic meter and a context that measures with it.

#![allow(dead_code)]

use forge_bench::scenario::{Meter, Mode, RunContext};
use forge_bench::schema::{CarbonSettings, Measurement};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A meter with a fixed cost per window: deterministic, no system counters.
pub struct FixedMeter {
    /// CO2 of every window, kg.
    pub co2_kg: f64,
}

impl Meter for FixedMeter {
    fn measure(
        &self,
        f: &mut dyn FnMut() -> forge_bench::Result<()>,
    ) -> forge_bench::Result<Measurement> {
        f()?;
        Ok(Measurement {
            wall_time_s: 1e-3,
            cpu_kwh: self.co2_kg,
            total_kwh: self.co2_kg,
            co2_kg: self.co2_kg,
            repeats: 1,
            energy_method: BTreeMap::from([("cpu".to_string(), "fixed".to_string())]),
            ..Default::default()
        })
    }
    fn settings(&self) -> CarbonSettings {
        CarbonSettings {
            energy_method: "fixed".into(),
            carbon_intensity_g_per_kwh: 475.0,
            pue: 1.0,
            region: "WLD".into(),
            note: "test".into(),
        }
    }
}

/// A quick-mode context measuring with a [`FixedMeter`] of `co2_kg` per window and no
/// repetition window.
pub fn fixed_ctx(co2_kg: f64) -> RunContext {
    let mut c = RunContext::new(Mode::Quick, Arc::new(FixedMeter { co2_kg }));
    c.min_measure_s = 0.0;
    c.max_repeats = 1;
    c
}

/// Runs `f` on a thread and fails the test if it does not finish within `secs` (a hang is a
/// failure, not a stuck test run).
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s (hang)"))
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Size of the word-level vocabulary of the tiny fixture models (`[PAD] [UNK] [CLS] [SEP]`,
/// then `w4`..`w63`).
pub const TINY_VOCAB: u32 = 64;

/// A copy of a tiny fixture model of forge-models (`tiny-bert`, `tiny-distilbert`) in `dir`,
/// with a word-level `tokenizer.json` over its 64-token vocabulary.
pub fn tiny_model_with_tokenizer(name: &str, dir: &std::path::Path) -> std::path::PathBuf {
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
    for i in 4..TINY_VOCAB {
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

/// An SST-2 folder (`<dir>/sst2/{train,dev}.tsv`) in the tiny vocabulary: `n_train` and
/// `n_dev` sentences, label 0 from words w4..w19, label 1 from w40..w55 (separable).
pub fn tiny_sst2(dir: &std::path::Path, n_train: u32, n_dev: u32) -> std::path::PathBuf {
    let sst2 = dir.join("sst2");
    std::fs::create_dir_all(&sst2).unwrap();
    let write = |file: &str, n: u32, offset: u32| {
        let mut s = String::from("sentence\tlabel\n");
        for i in 0..n {
            let (base, label) = if i % 2 == 0 { (4, 0) } else { (40, 1) };
            let words: Vec<String> = (0..6)
                .map(|k| format!("w{}", base + ((i + offset) * 7 + k * 3) % 16))
                .collect();
            s += &format!("{}\t{label}\n", words.join(" "));
        }
        std::fs::write(sst2.join(file), s).unwrap();
    };
    write("train.tsv", n_train, 0);
    write("dev.tsv", n_dev, 1000);
    dir.to_path_buf()
}

/// An AG News folder (`<dir>/ag_news/{train,test}.tsv`) in the tiny vocabulary: `n_train` and
/// `n_test` texts, class `c` (World, Sports, Business, Sci/Tech) from the words
/// `w{4 + 15 c}`..`w{18 + 15 c}` (separable).
pub fn tiny_ag_news(dir: &std::path::Path, n_train: u32, n_test: u32) -> std::path::PathBuf {
    let ag = dir.join("ag_news");
    std::fs::create_dir_all(&ag).unwrap();
    let names = ["World", "Sports", "Business", "Sci/Tech"];
    let write = |file: &str, n: u32, offset: u32| {
        let mut s = String::from("text\tlabel\n");
        for i in 0..n {
            let c = i % 4;
            let words: Vec<String> = (0..6)
                .map(|k| format!("w{}", 4 + 15 * c + ((i + offset) * 7 + k * 3) % 15))
                .collect();
            s += &format!("{}\t{}\n", words.join(" "), names[c as usize]);
        }
        std::fs::write(ag.join(file), s).unwrap();
    };
    write("train.tsv", n_train, 0);
    write("test.tsv", n_test, 1000);
    dir.to_path_buf()
}
