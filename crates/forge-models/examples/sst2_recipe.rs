//! The SST-2 fine-tuning recipe of docs/training-parity.md, in Forge: all-MiniLM-L6-v2 + a new
//! 2-class head, the 2,000 training sentences listed in examples/reference/sst2_train_2000.idx,
//! evaluation on the 872 dev sentences, max length 64, batch 16, 3 epochs, AdamW (weight decay
//! 0.01, none on biases and LayerNorm), 6% linear warmup then linear decay, clipping at 1.0.
//! Full fine-tuning at lr 5e-5; LoRA r 8, alpha 16 on query/value (pooler and classifier
//! trainable) at lr 5e-4. The PyTorch reference is examples/reference/sst2_recipe.py.
//!
//! ```text
//! RAYON_NUM_THREADS=1 nice -n 10 cargo run -p forge-models --release --example sst2_recipe -- \
//!     --model ../shared/models/all-minilm-l6-v2 --data ../shared/data/text/sst2 \
//!     --modes full,lora --seeds 0,1,2 --out crates/forge-models/examples/reference/sst2_forge_results.json
//! ```
//!
//! Each finished run is printed as one JSON line and merged into `--out` (atomically), so an
//! interrupted sweep keeps what it finished.
//!
//! For the representation-safety checks (docs/safety-transformers.md): `--save-models DIR` writes
//! each fine-tuned model with `save_pretrained` (plus the tokenizer) to `DIR/<mode>-seed<seed>`
//! (LoRA folded in), and `--shuffle-labels` trains on a seeded permutation of the training labels
//! (a deliberately useless source; recorded with mode `<mode>-shuffled`).

use anyhow::{bail, Context, Result};
use candle_core::Device;
use forge_lora::{LoraConfig, LoraInjector};
use forge_models::train::{
    fine_tune, Callback, Control, EpochRecord, Hooks, StepEvent, TextDataset, TrainConfig,
};
use forge_models::{AnyClassifier, ModelFiles, TextTokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

const MAX_LEN: usize = 64;

/// Progress on stderr every `every` steps and after each epoch.
struct Progress {
    every: usize,
    start: Instant,
}

impl Callback for Progress {
    fn on_step(&mut self, e: &StepEvent) -> Control {
        if e.step.is_multiple_of(self.every) {
            eprintln!(
                "step {}/{} loss {:.4} lr {:.2e} |g| {:.3} {:.0}s",
                e.step,
                e.total_steps,
                e.loss,
                e.lr,
                e.grad_norm,
                self.start.elapsed().as_secs_f64()
            );
        }
        Control::Continue
    }
    fn on_epoch(&mut self, r: &mut EpochRecord) -> Control {
        eprintln!(
            "epoch {} train loss {:.4} val acc {:?} {:.0}s",
            r.epoch,
            r.train_loss,
            r.val.as_ref().map(|v| v.accuracy),
            r.wall_seconds
        );
        Control::Continue
    }
}

fn read_tsv(path: &Path) -> Result<(Vec<String>, Vec<u32>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let mut lines = text.lines();
    if lines.next() != Some("sentence\tlabel") {
        bail!("{path:?}: expected the header 'sentence<TAB>label'");
    }
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let (t, l) = line
            .split_once('\t')
            .with_context(|| format!("{path:?} line {}: no tab", i + 2))?;
        texts.push(t.to_string());
        labels.push(
            l.trim()
                .parse()
                .with_context(|| format!("{path:?} line {}", i + 2))?,
        );
    }
    Ok((texts, labels))
}

struct Args {
    model: PathBuf,
    data: PathBuf,
    modes: Vec<String>,
    seeds: Vec<u64>,
    out: Option<PathBuf>,
    save_models: Option<PathBuf>,
    shuffle_labels: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: "../shared/models/all-minilm-l6-v2".into(),
        data: "../shared/data/text/sst2".into(),
        modes: vec!["full".into(), "lora".into()],
        seeds: vec![0, 1, 2],
        out: None,
        save_models: None,
        shuffle_labels: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--shuffle-labels" {
            a.shuffle_labels = true;
            continue;
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--model" => a.model = v.into(),
            "--data" => a.data = v.into(),
            "--modes" => a.modes = v.split(',').map(str::to_string).collect(),
            "--seeds" => {
                a.seeds = v
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<std::result::Result<_, _>>()?
            }
            "--out" => a.out = Some(v.into()),
            "--save-models" => a.save_models = Some(v.into()),
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

fn run(args: &Args, mode: &str, seed: u64) -> Result<serde_json::Value> {
    let dev = Device::Cpu;
    let files = ModelFiles::from_dir(&args.model)?;
    let tok_path = files
        .tokenizer
        .clone()
        .context("the model folder has no tokenizer.json")?;
    let tok = TextTokenizer::from_file(&tok_path, MAX_LEN)?;
    let (texts, labels) = read_tsv(&args.data.join("train.tsv"))?;
    let idx_file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/reference/sst2_train_2000.idx");
    let idx: Vec<usize> = std::fs::read_to_string(&idx_file)?
        .split_whitespace()
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let train_texts: Vec<&str> = idx.iter().map(|&i| texts[i].as_str()).collect();
    let mut train_labels: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
    if args.shuffle_labels {
        // Fisher-Yates with a SplitMix64 stream seeded by the run's seed.
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..train_labels.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            train_labels.swap(i, j);
        }
    }
    let train = TextDataset::new(&train_texts, &train_labels, &tok)?;
    let (dev_texts, dev_labels) = read_tsv(&args.data.join("dev.tsv"))?;
    let val = TextDataset::new(&dev_texts, &dev_labels, &tok)?;

    let t0 = Instant::now();
    let mut model = AnyClassifier::from_files(&files, Some(2), seed, &dev)?;
    let lr = match mode {
        "full" => 5e-5,
        "lora" => {
            let cfg = LoraConfig::new(8, 16.0, &["query", "value"])
                .with_modules_to_save(&["pooler.dense", "classifier"]);
            LoraInjector::new(cfg)?.with_seed(seed).inject(&mut model)?;
            5e-4
        }
        other => bail!("unknown mode {other:?} (full, lora)"),
    };
    let config = TrainConfig {
        epochs: 3,
        batch_size: 16,
        eval_batch_size: 64,
        max_length: MAX_LEN,
        learning_rate: lr,
        weight_decay: 0.01,
        warmup_ratio: 0.06,
        max_grad_norm: Some(1.0),
        seed,
        ..Default::default()
    };
    let mut hooks = Hooks::new().callback(Progress {
        every: 25,
        start: Instant::now(),
    });
    let history = fine_tune(&mut model, &train, Some(&val), &config, &mut hooks)?;
    let wall = t0.elapsed().as_secs_f64();
    let v = history.last_val().context("no evaluation ran")?;
    let mode = if args.shuffle_labels {
        format!("{mode}-shuffled")
    } else {
        mode.to_string()
    };
    if let Some(dir) = &args.save_models {
        use forge_models::SavePretrained;
        let out = dir.join(format!("{mode}-seed{seed}"));
        forge_lora::merge_all(&mut model)?;
        model.save_pretrained(&out)?;
        std::fs::copy(&tok_path, out.join("tokenizer.json"))?;
        eprintln!("saved {}", out.display());
    }
    Ok(serde_json::json!({
        "framework": "forge",
        "mode": mode,
        "seed": seed,
        "dev_accuracy": v.accuracy,
        "dev_macro_f1": v.macro_f1,
        "dev_loss": v.loss,
        "train_loss_per_epoch": history.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
        "train_seconds": history.wall_seconds,
        "wall_seconds": wall,
        "trainable_parameters": history.trainable_parameters,
        "steps": history.steps,
        "threads": candle_core::utils::get_num_threads(),
        // FORGE_PRECISION=bf16 runs the recipe in the bf16 mixed-precision mode
        "precision": match forge_linalg::bf16::matmul_precision() {
            forge_linalg::bf16::MatmulPrecision::Bf16 => "bf16",
            _ => "f32",
        },
    }))
}

fn main() -> Result<()> {
    forge_models::perf::tune_allocator();
    let args = parse_args()?;
    let mut results: Vec<serde_json::Value> = match &args.out {
        Some(p) if p.is_file() => serde_json::from_str(&std::fs::read_to_string(p)?)?,
        _ => vec![],
    };
    for mode in &args.modes {
        for &seed in &args.seeds {
            let r = run(&args, mode, seed)?;
            println!("{r}");
            if let Some(p) = &args.out {
                results.retain(|x| {
                    !(x["mode"] == r["mode"]
                        && x["seed"] == r["seed"]
                        && x.get("precision") == r.get("precision"))
                });
                results.push(r);
                forge_lora::io::write_atomic(
                    p,
                    serde_json::to_string_pretty(&results)?.as_bytes(),
                )?;
            }
        }
    }
    Ok(())
}
