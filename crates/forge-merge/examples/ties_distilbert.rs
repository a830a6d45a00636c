//! Benchmark: TIES of two DistilBERT-size checkpoints (67M parameters each, plus the base) from
//! files, Forge side by side with mergekit in one run: wall time, peak RSS (getrusage of each
//! merge's own process) and whether the outputs are bit-identical.
//!
//! ```text
//! cargo run --release -p forge-merge --example ties_distilbert -- [WORK_DIR]
//! ```
//! The random checkpoints (base, ft1 = base + noise, ft2 = base + noise; ~270 MB each) are
//! written once to WORK_DIR (default: $TMPDIR/forge-merge-bench). mergekit runs when
//! `$FORGE_PYTHON` (default /work/venv/bin/python) can import it; install it with
//! `pip install mergekit` into that environment.

use forge_linalg::io::{SafeTensorsWriter, TensorSpec};
use forge_merge::{merge_files, MergeConfig, WriteOptions};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CONFIG: &str = "merge_method: ties
base_model: base
models:
  - model: ft1
    parameters: {weight: 0.5, density: 0.5}
  - model: ft2
    parameters: {weight: 0.5, density: 0.5}
dtype: float32
";

const HF_CONFIG: &str = r#"{
  "architectures": ["DistilBertForSequenceClassification"],
  "model_type": "distilbert", "activation": "gelu", "attention_dropout": 0.1, "dim": 768,
  "dropout": 0.1, "hidden_dim": 3072, "initializer_range": 0.02, "max_position_embeddings": 512,
  "n_heads": 12, "n_layers": 6, "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
  "sinusoidal_pos_embds": false, "vocab_size": 30522, "torch_dtype": "float32"
}
"#;

/// DistilBERT-base with a 2-class head: Hugging Face names and shapes.
fn distilbert_specs() -> Vec<TensorSpec> {
    let f = |n: String, shape: Vec<usize>| TensorSpec {
        name: n,
        dtype: safetensors::Dtype::F32,
        shape,
    };
    let p = "distilbert";
    let mut v = vec![
        f(
            format!("{p}.embeddings.word_embeddings.weight"),
            vec![30522, 768],
        ),
        f(
            format!("{p}.embeddings.position_embeddings.weight"),
            vec![512, 768],
        ),
        f(format!("{p}.embeddings.LayerNorm.weight"), vec![768]),
        f(format!("{p}.embeddings.LayerNorm.bias"), vec![768]),
    ];
    for l in 0..6 {
        let q = format!("{p}.transformer.layer.{l}");
        for m in ["q_lin", "k_lin", "v_lin", "out_lin"] {
            v.push(f(format!("{q}.attention.{m}.weight"), vec![768, 768]));
            v.push(f(format!("{q}.attention.{m}.bias"), vec![768]));
        }
        for ln in ["sa_layer_norm", "output_layer_norm"] {
            v.push(f(format!("{q}.{ln}.weight"), vec![768]));
            v.push(f(format!("{q}.{ln}.bias"), vec![768]));
        }
        v.push(f(format!("{q}.ffn.lin1.weight"), vec![3072, 768]));
        v.push(f(format!("{q}.ffn.lin1.bias"), vec![3072]));
        v.push(f(format!("{q}.ffn.lin2.weight"), vec![768, 3072]));
        v.push(f(format!("{q}.ffn.lin2.bias"), vec![768]));
    }
    v.push(f("pre_classifier.weight".into(), vec![768, 768]));
    v.push(f("pre_classifier.bias".into(), vec![768]));
    v.push(f("classifier.weight".into(), vec![2, 768]));
    v.push(f("classifier.bias".into(), vec![2]));
    v
}

/// Write base, ft1, ft2 (seeded) unless present.
fn make_checkpoints(dir: &Path) -> anyhow::Result<()> {
    let specs = distilbert_specs();
    let n: usize = specs.iter().map(TensorSpec::elem_count).sum();
    for (k, name) in ["base", "ft1", "ft2"].iter().enumerate() {
        let d = dir.join(name);
        if d.join("model.safetensors").is_file() {
            continue;
        }
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("config.json"), HF_CONFIG)?;
        let mut w = SafeTensorsWriter::create(
            &d.join("model.safetensors"),
            specs.clone(),
            Some(forge_linalg::io::pt_metadata()),
        )?;
        // The base is the same stream for all three; fine-tunes add their own noise.
        let mut base_rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(1 + k as u64);
        for s in &specs {
            let v: Vec<f32> = (0..s.elem_count())
                .map(|_| {
                    let b = (base_rng.random::<f32>() - 0.5) * 0.1;
                    if k == 0 {
                        b
                    } else {
                        b + (noise.random::<f32>() - 0.5) * 0.01
                    }
                })
                .collect();
            w.write_raw(bytemuck::cast_slice(&v))?;
        }
        w.finish()?;
        eprintln!("wrote {} ({n} parameters)", d.display());
    }
    Ok(())
}

fn maxrss_kib() -> i64 {
    // SAFETY: getrusage writes into the struct we pass; no other memory is touched.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_maxrss
    }
}

/// Child mode: run the Forge merge and print "wall_s maxrss_kib".
fn run_forge(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let cfg = MergeConfig::from_yaml(CONFIG)?;
    let t0 = Instant::now();
    merge_files(&cfg, dir, out, &WriteOptions::default())?;
    println!("{:.3} {}", t0.elapsed().as_secs_f64(), maxrss_kib());
    Ok(())
}

const MERGEKIT_PY: &str = r#"
import resource, sys, time, os, yaml
os.chdir(sys.argv[1])
from mergekit.config import MergeConfiguration
from mergekit.merge import MergeOptions, run_merge
cfg = MergeConfiguration.model_validate(yaml.safe_load(sys.argv[3]))
t = time.time()
run_merge(cfg, sys.argv[2], options=MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True))
print(f"{time.time() - t:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
"#;

fn parse(out: &[u8]) -> Option<(f64, f64)> {
    let s = String::from_utf8_lossy(out);
    let line = s.lines().last()?;
    let mut it = line.split_whitespace();
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse::<f64>().ok()? / 1024.0 / 1024.0,
    ))
}

fn identical(a: &Path, b: &Path) -> anyhow::Result<(usize, usize)> {
    let fa = forge_merge::ModelFiles::open(a)?;
    let fb = forge_merge::ModelFiles::open(b)?;
    use forge_merge::TensorSource;
    let (mut same, mut total) = (0, 0);
    for s in fa.specs() {
        total += 1;
        let x = fa.read_f32(&s.name)?;
        let y = fb.read_f32(&s.name)?;
        if x.len() == y.len()
            && x.iter()
                .zip(y.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits())
        {
            same += 1;
        }
        fa.release(&s.name);
        fb.release(&s.name);
    }
    Ok((same, total))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--forge-child" {
        return run_forge(Path::new(&args[2]), Path::new(&args[3]));
    }
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("forge-merge-bench"));
    make_checkpoints(&dir)?;
    let out_forge = dir.join("out-forge");
    let out_mk = dir.join("out-mergekit");
    let exe = std::env::current_exe()?;
    let o = Command::new(&exe)
        .args([
            "--forge-child",
            &dir.display().to_string(),
            &out_forge.display().to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "forge child failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (fw, fr) = parse(&o.stdout).ok_or_else(|| anyhow::anyhow!("bad child output"))?;
    println!("| tool | TIES wall time | peak RSS |");
    println!("|---|---|---|");
    println!("| forge-merge | {fw:.2} s | {fr:.2} GiB |");
    let python = std::env::var("FORGE_PYTHON").unwrap_or_else(|_| "/work/venv/bin/python".into());
    let mk = Command::new(&python)
        .args([
            "-c",
            MERGEKIT_PY,
            &dir.display().to_string(),
            &out_mk.display().to_string(),
            CONFIG,
        ])
        .output();
    match mk {
        Ok(o) if o.status.success() => {
            let (mw, mr) =
                parse(&o.stdout).ok_or_else(|| anyhow::anyhow!("bad mergekit output"))?;
            println!("| mergekit | {mw:.2} s | {mr:.2} GiB |");
            let (same, total) = identical(&out_forge, &out_mk)?;
            println!("\nbit-identical tensors: {same} of {total}");
        }
        Ok(o) => println!(
            "| mergekit | failed | |\n{}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Err(e) => println!("| mergekit | not run ({python}: {e}) | |"),
    }
    Ok(())
}
