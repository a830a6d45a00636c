//! Structure-aware fuzzing, on stable Rust, of the parsers behind the `forge` commands that
//! forge-data's own fuzz targets (`crates/forge-data/tests/fuzz.rs`) do not cover: a model's
//! `config.json` and `model.safetensors` (forge-models), a PEFT adapter folder (forge-lora), a
//! mergekit YAML (forge-merge) and a benchmark results file (forge-bench). Each target mutates a
//! real, valid input (the committed fixtures) with JSON-aware edits (a random node replaced by an
//! extreme number, a wrong type, a huge or empty value, a key removed), raw byte flips and
//! truncation, and checks what every input must meet:
//! - no panic (caught and reported with the input), no abort, no hang;
//! - models and adapters that load give finite logits; an adapter that fails to load leaves the
//!   model exactly as it was (loading is all-or-nothing);
//! - errors render as one non-empty message.
//!
//! Each target runs for `FORGE_FUZZ_SECS` seconds (default 1, for CI) from `FORGE_FUZZ_SEED`:
//! `FORGE_FUZZ_SECS=600 cargo test --release -p forge-cli --test fuzz -- --nocapture --test-threads 1`
//! runs each for ten minutes and prints the execution counts; `FORGE_FUZZ_CASE=<seed>` replays the
//! one case a failure printed, in a folder kept under the temporary directory.

use candle_core::{Device, Tensor};
use forge_models::{AnyClassifier, ModelFiles, SequenceClassifier};
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn budget() -> Duration {
    let secs = std::env::var("FORGE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("FORGE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xF0_2CE)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("crates/forge-models/tests/fixtures").join(name)
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn coin(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A value that breaks parsers: extreme and non-integral numbers, wrong types, huge and empty
/// containers and strings.
fn nasty(rng: &mut Rng) -> Value {
    match rng.below(18) {
        0 => Value::Null,
        1 => true.into(),
        2 => (-1).into(),
        3 => 0.into(),
        4 => 1.into(),
        5 => serde_json::json!(1e308),
        6 => serde_json::json!(-1e308),
        7 => serde_json::json!(1u64 << 40),
        8 => serde_json::json!(u64::MAX),
        9 => serde_json::json!(i64::MIN),
        10 => serde_json::json!(2.5),
        11 => "".into(),
        12 => "x".repeat(rng.below(3) * 5000).into(),
        13 => serde_json::json!([]),
        14 => serde_json::json!({}),
        15 => serde_json::json!([1, 2, 3]),
        16 => "F64".into(),
        _ => "BOOL".into(),
    }
}

/// Replaces a random node of `v` (or removes an object key, or duplicates an array element).
fn mutate_json(v: &mut Value, rng: &mut Rng) {
    mutate_json_at(v, rng, 0);
}

fn mutate_json_at(v: &mut Value, rng: &mut Rng, depth: usize) {
    let deeper = depth < 6 && rng.coin(0.7);
    match v {
        Value::Object(m) if !m.is_empty() && deeper => {
            let k = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if rng.coin(0.15) {
                m.remove(&k);
            } else if let Some(child) = m.get_mut(&k) {
                mutate_json_at(child, rng, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && deeper => {
            let i = rng.below(a.len());
            if rng.coin(0.1) {
                let dup = a[i].clone();
                a.push(dup);
            } else {
                mutate_json_at(&mut a[i], rng, depth + 1);
            }
        }
        _ => *v = nasty(rng),
    }
}

/// JSON-aware edits most of the time, else byte flips or truncation.
fn mutate_json_text(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    if rng.coin(0.75) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(text) {
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, rng);
            }
            return serde_json::to_vec(&v).expect("serialisable");
        }
    }
    mutate_bytes(text, rng)
}

fn mutate_bytes(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.below(4) {
        0 if !b.is_empty() => b.truncate(rng.below(b.len())),
        1 => b.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        _ => {
            for _ in 0..1 + rng.below(8) {
                if b.is_empty() {
                    break;
                }
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
    }
    b
}

/// A safetensors file with its JSON header mutated (length prefix fixed up most of the time),
/// or its bytes mutated.
fn mutate_safetensors(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    if bytes.len() >= 8 && rng.coin(0.7) {
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        if let Some(header) = bytes.get(8..8 + n) {
            let h = mutate_json_text(header, rng);
            let mut out = Vec::with_capacity(bytes.len() + h.len());
            let len = if rng.coin(0.9) {
                h.len() as u64
            } else {
                rng.next() % (1 << 20)
            };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(&bytes[8 + n..]);
            return out;
        }
    }
    mutate_bytes(bytes, rng)
}

/// Runs `case` on fresh inputs until the budget is spent; a panic fails the test with the input's
/// seed. Returns the number of executions.
fn fuzz(name: &str, mut case: impl FnMut(&mut Rng, &Path) -> Result<(), String>) -> u64 {
    if let Some(case_seed) = std::env::var("FORGE_FUZZ_CASE")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
    {
        // Replay one case (the seed a failure printed) in a folder that is kept for inspection.
        let dir = std::env::temp_dir().join(format!("forge-fuzz-{name}-{case_seed:x}"));
        std::fs::create_dir_all(&dir).expect("case dir");
        eprintln!(
            "fuzz {name}: replaying case {case_seed:#x} in {}",
            dir.display()
        );
        if let Err(e) = case(&mut Rng(case_seed), &dir) {
            panic!("{name}: case seed {case_seed:#x}: {e}");
        }
        return 1;
    }
    let start = Instant::now();
    let mut execs = 0u64;
    let mut rng = Rng(seed()
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))));
    while execs == 0 || start.elapsed() < budget() {
        let case_seed = rng.next();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = Rng(case_seed);
        let out = catch_unwind(AssertUnwindSafe(|| case(&mut r, dir.path())));
        match out {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{name}: case seed {case_seed:#x}: {e}"),
            Err(_) => panic!("{name}: case seed {case_seed:#x} panicked"),
        }
        execs += 1;
    }
    eprintln!(
        "fuzz {name}: {execs} executions in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    execs
}

fn one_line(e: &dyn std::fmt::Display) -> Result<(), String> {
    let s = e.to_string();
    if s.trim().is_empty() {
        return Err("empty error message".into());
    }
    Ok(())
}

fn ids() -> Tensor {
    Tensor::new(&[[2u32, 7, 9, 3], [2, 11, 3, 0]], &Device::Cpu).expect("ids")
}

fn logits_of(m: &AnyClassifier) -> Result<Vec<f32>, String> {
    let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &Device::Cpu).expect("mask");
    let l = m.forward(&ids(), Some(&mask)).map_err(|e| e.to_string())?;
    l.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1())
        .map_err(|e| e.to_string())
}

fn finite(v: &[f32], what: &str) -> Result<(), String> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(format!("{what} loaded but gives non-finite logits {v:?}"))
    }
}

/// A copy of tiny-bert with `config.json` / `model.safetensors` mutated, loaded.
fn model_case(rng: &mut Rng, dir: &Path, mutate_config: bool) -> Result<(), String> {
    let src = fixture("tiny-bert");
    let config = std::fs::read(src.join("config.json")).expect("fixture");
    let weights = std::fs::read(src.join("model.safetensors")).expect("fixture");
    let (config, weights) = if mutate_config {
        (mutate_json_text(&config, rng), weights)
    } else {
        (config, mutate_safetensors(&weights, rng))
    };
    std::fs::write(dir.join("config.json"), config).expect("write");
    std::fs::write(dir.join("model.safetensors"), weights).expect("write");
    let files = match ModelFiles::from_dir(dir) {
        Ok(f) => f,
        Err(e) => return one_line(&e),
    };
    match AnyClassifier::from_files(&files, None, 0, &Device::Cpu) {
        Ok(m) => match logits_of(&m) {
            Ok(v) => finite(&v, "model"),
            Err(e) => one_line(&e),
        },
        Err(e) => one_line(&e),
    }
}

#[test]
fn fuzz_model_config_json() {
    fuzz("config.json", |rng, dir| model_case(rng, dir, true));
}

#[test]
fn fuzz_model_safetensors() {
    fuzz("model.safetensors", |rng, dir| model_case(rng, dir, false));
}

#[test]
fn fuzz_adapter_folder() {
    let base_files = ModelFiles::from_dir(&fixture("tiny-bert")).expect("fixture");
    let reference = AnyClassifier::from_files(&base_files, None, 0, &Device::Cpu).expect("fixture");
    let base_logits = logits_of(&reference).expect("fixture logits");
    let src = fixture("tiny-bert-lora");
    let cfg = std::fs::read(src.join("adapter_config.json")).expect("fixture");
    let w = std::fs::read(src.join("adapter_model.safetensors")).expect("fixture");
    fuzz("adapter", |rng, dir| {
        let (c, wt) = if rng.coin(0.5) {
            (mutate_json_text(&cfg, rng), w.clone())
        } else {
            (cfg.clone(), mutate_safetensors(&w, rng))
        };
        std::fs::write(dir.join("adapter_config.json"), c).expect("write");
        std::fs::write(dir.join("adapter_model.safetensors"), wt).expect("write");
        let mut m = AnyClassifier::from_files(&base_files, None, 0, &Device::Cpu)
            .map_err(|e| e.to_string())?;
        match forge_lora::load_adapter(&mut m, dir) {
            Ok(_) => finite(&logits_of(&m)?, "adapter"),
            Err(e) => {
                one_line(&e)?;
                if logits_of(&m)? != base_logits {
                    return Err(format!("a failed load ({e}) changed the model"));
                }
                Ok(())
            }
        }
    });
}

#[test]
fn fuzz_mergekit_yaml() {
    let fixtures = root().join("crates/forge-merge/tests/fixtures/configs");
    let texts: Vec<String> = std::fs::read_dir(&fixtures)
        .expect("fixtures")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("yaml"))
        .collect();
    fuzz("mergekit yaml", |rng, _| {
        let text = &texts[rng.below(texts.len())];
        // YAML is a superset of JSON: mutate through serde_json's model of the document
        let v: Result<Value, _> = serde_yaml_ng::from_str(text);
        let mutated = match v {
            Ok(mut v) if rng.coin(0.7) => {
                for _ in 0..1 + rng.below(3) {
                    mutate_json(&mut v, rng);
                }
                serde_yaml_ng::to_string(&v).map_err(|e| e.to_string())?
            }
            _ => String::from_utf8_lossy(&mutate_bytes(text.as_bytes(), rng)).into_owned(),
        };
        match forge_merge::MergeConfig::from_yaml(&mutated) {
            Ok(_) => Ok(()),
            Err(e) => one_line(&e),
        }
    });
}

#[test]
fn fuzz_results_json() {
    let reference = std::fs::read(root().join("results/reference.json")).expect("fixture");
    fuzz("results json", |rng, dir| {
        let p = dir.join("results.json");
        std::fs::write(&p, mutate_json_text(&reference, rng)).expect("write");
        match forge_bench::io::read_results(&p) {
            Ok(r) => forge_bench::validate::validate(&r)
                .map_err(|e| format!("read_results accepted a file that fails validation: {e}")),
            Err(e) => one_line(&e),
        }
    });
}

/// The mutators do produce the inputs they are meant to (a fuzz target that never reaches the
/// parser's interesting paths would pass vacuously).
#[test]
fn mutators_reach_both_outcomes() {
    let mut ok = 0;
    let mut err = 0;
    let mut rng = Rng(1);
    for _ in 0..200 {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = fixture("tiny-bert");
        let config = std::fs::read(src.join("config.json")).expect("fixture");
        std::fs::write(
            dir.path().join("config.json"),
            mutate_json_text(&config, &mut rng),
        )
        .expect("write");
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .expect("copy");
        let loaded = ModelFiles::from_dir(dir.path())
            .ok()
            .and_then(|f| AnyClassifier::from_files(&f, None, 0, &Device::Cpu).ok());
        if loaded.is_some() {
            ok += 1;
        } else {
            err += 1;
        }
    }
    assert!(ok > 10 && err > 10, "loaded {ok}, rejected {err}");
}
