//! The bad-input corpus of adapter files (`tests/corpus/`, made by forge-models'
//! `tests/corpus/make_corpus.py`): each file replaces one file of `tests/corpus/good/` and
//! [`forge_lora::load_adapter`] must fail with the expected variant, naming the expected tensor
//! or field, leave the model exactly as it was, and then load the good adapter.

use candle_core::{DType, Device, Module, Tensor};
use forge_lora::{count_parameters, load_adapter, LoraLinear, LoraModel, ModuleMut};
use std::path::{Path, PathBuf};

struct Mlp {
    fc1: LoraLinear,
    fc2: LoraLinear,
    head: LoraLinear,
}

impl LoraModel for Mlp {
    fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
        vec![
            ("fc1".into(), ModuleMut::Linear(&mut self.fc1)),
            ("fc2".into(), ModuleMut::Linear(&mut self.fc2)),
            ("head".into(), ModuleMut::Linear(&mut self.head)),
        ]
    }
}

impl Mlp {
    fn new() -> Self {
        let dev = Device::Cpu;
        let mut rng = forge_linalg::seeded_rng(3);
        Self {
            fc1: LoraLinear::new_random(4, 8, true, 0.5, &dev, &mut rng).unwrap(),
            fc2: LoraLinear::new_random(8, 2, true, 0.5, &dev, &mut rng).unwrap(),
            head: LoraLinear::new_random(2, 3, true, 0.5, &dev, &mut rng).unwrap(),
        }
    }

    fn out(&self) -> Vec<Vec<f32>> {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 4))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let h = self.fc1.forward(&x).unwrap().relu().unwrap();
        let h = self.fc2.forward(&h).unwrap();
        self.head.forward(&h).unwrap().to_vec2().unwrap()
    }
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn good_adapter_loads() {
    let mut m = Mlp::new();
    let before = m.out();
    load_adapter(&mut m, &corpus().join("good")).unwrap();
    assert_eq!(count_parameters(&mut m).adapter, 2 * (4 + 8));
    assert_ne!(m.out(), before);
}

#[test]
fn every_corpus_case_fails_cleanly() {
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("expected.json")).unwrap())
            .unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "good" && n != "expected.json")
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, expected.keys().cloned().collect::<Vec<_>>());
    for (case, want) in &expected {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("case");
        copy_dir(&corpus().join("good"), &dir);
        let target = if case.ends_with(".adapter_config.json") {
            "adapter_config.json"
        } else {
            "adapter_model.safetensors"
        };
        std::fs::copy(corpus().join(case), dir.join(target)).unwrap();
        let mut m = Mlp::new();
        let before = m.out();
        let e = load_adapter(&mut m, &dir).unwrap_err();
        let kind = want["error"].as_str().unwrap();
        let mention = want["mentions"].as_str().unwrap();
        assert!(
            format!("{e:?}").starts_with(kind),
            "{case}: expected {kind}, got {e:?}"
        );
        assert!(
            e.to_string().contains(mention),
            "{case}: {e} lacks {mention:?}"
        );
        assert_eq!(m.out(), before, "{case}: model changed by a failed load");
        assert_eq!(count_parameters(&mut m).adapter, 0, "{case}");
        assert!(
            m.head.weight().is_trainable(),
            "{case}: trainable flags changed"
        );
        load_adapter(&mut m, &corpus().join("good"))
            .unwrap_or_else(|e| panic!("{case}: retry failed: {e}"));
    }
}
