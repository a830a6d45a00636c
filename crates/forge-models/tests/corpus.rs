//! The bad-input corpus (`tests/corpus/`, made by `tests/corpus/make_corpus.py`): every file is
//! laid over a good fixture folder, loaded, and must fail with the expected error variant and a
//! message naming the expected tensor or field. Adapter cases also check that the failed load
//! left the model exactly as it was and that the good adapter then loads.

use candle_core::{Device, Tensor};
use forge_lora::load_adapter;
use forge_models::{AnyClassifier, ModelFiles, SequenceClassifier};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The file of the fixture folder a corpus file replaces.
fn target_name(case: &str) -> &'static str {
    if case.ends_with(".adapter_config.json") {
        "adapter_config.json"
    } else if case.ends_with(".config.json") {
        "config.json"
    } else if case.starts_with("adapter/") {
        "adapter_model.safetensors"
    } else {
        "model.safetensors"
    }
}

fn load_model(dir: &Path) -> forge_models::Result<AnyClassifier> {
    AnyClassifier::from_files(&ModelFiles::from_dir(dir)?, None, 0, &Device::Cpu)
}

fn logits(m: &AnyClassifier) -> Vec<Vec<f32>> {
    let ids = Tensor::new(&[[1u32, 5, 17, 33, 8, 2]], &Device::Cpu).unwrap();
    m.forward(&ids, None).unwrap().to_vec2().unwrap()
}

#[test]
fn every_corpus_case_fails_with_its_expected_error() {
    let corpus = root().join("corpus");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("expected.json")).unwrap())
            .unwrap();
    // every file of the corpus has an expectation, and the reverse
    let mut on_disk = Vec::new();
    for sub in ["model", "adapter"] {
        for e in std::fs::read_dir(corpus.join(sub)).unwrap() {
            on_disk.push(format!(
                "{sub}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    on_disk.sort();
    let listed: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(on_disk, listed, "corpus files and expected.json disagree");
    assert!(listed.len() >= 20);
    let base = load_model(&root().join("fixtures").join("tiny-distilbert")).unwrap();
    let base_logits = logits(&base);
    for (case, want) in &expected {
        let kind = want["error"].as_str().unwrap();
        let mention = want["mentions"].as_str().unwrap();
        let over = want["over"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("case");
        copy_dir(&root().join("fixtures").join(over), &dir);
        std::fs::copy(corpus.join(case), dir.join(target_name(case))).unwrap();
        let (debug, shown) = if case.starts_with("adapter/") {
            let mut m = load_model(&root().join("fixtures").join("tiny-distilbert")).unwrap();
            let e = load_adapter(&mut m, &dir).unwrap_err();
            // all-or-nothing: the model is unchanged and a good adapter still loads
            assert_eq!(
                logits(&m),
                base_logits,
                "{case}: model changed by a failed load"
            );
            assert_eq!(forge_lora::count_parameters(&mut m).adapter, 0, "{case}");
            load_adapter(&mut m, &root().join("fixtures").join(over))
                .unwrap_or_else(|e| panic!("{case}: retry with the good adapter failed: {e}"));
            (format!("{e:?}"), e.to_string())
        } else {
            let e = load_model(&dir).unwrap_err();
            (format!("{e:?}"), e.to_string())
        };
        assert!(
            debug.starts_with(kind) || debug.starts_with(&format!("Lora({kind}")),
            "{case}: expected {kind}, got {debug}"
        );
        assert!(
            shown.contains(mention),
            "{case}: message does not mention {mention:?}: {shown}"
        );
    }
}
