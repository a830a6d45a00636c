//! `cargo xtask bench`: Forge's training workloads side by side with PyTorch (forge-bench's
//! `speed` module defines them; `xtask/bench/torch_reference.py` is the PyTorch twin).
//!
//! Every (model, workload, implementation) runs in a fresh process, so each peak RSS is that
//! workload's own; Forge and PyTorch alternate, round after round, so a change in machine load
//! hits both.

use anyhow::{bail, Context, Result};
use clap::Args;
use forge_bench::speed::{
    check_device, check_speed_gates, speed_rows, speed_table, BenchModel, MatmulPrecision,
    SpeedConfig, SpeedGates, SpeedReport, SpeedRun, Workload, SPEED_SCHEMA,
};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Args)]
pub struct BenchArgs {
    /// A Python interpreter with torch, transformers and peft: run the PyTorch reference
    /// (xtask/bench/torch_reference.py) on the same workloads and print the ratios.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Model dimensions (repeatable; default: both).
    #[arg(long = "model", value_parser = ["distilbert-base", "minilm"])]
    models: Vec<String>,
    /// Workloads (repeatable; default: all five).
    #[arg(long = "workload", value_parser = ["forward", "lora", "full", "fisher", "merge"])]
    workloads: Vec<String>,
    /// Also time the bf16 mixed-precision mode on forward, LoRA and full steps: Forge's
    /// (`FORGE_PRECISION=bf16`: bf16 products on AMX / AVX512-BF16, f32 accumulation) and,
    /// with --python, PyTorch's CPU autocast(bf16); the bf16 rows compare the two.
    #[arg(long)]
    bf16: bool,
    /// Internal (worker): the precision of Forge's products.
    #[arg(long, hide = true, default_value = "f32", value_parser = ["f32", "bf16"])]
    precision: String,
    /// Timed iterations per process.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Alternating rounds (Forge, PyTorch, Forge, ...): each side's best median counts.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Where the models run: `cpu`, or `cuda` / `cuda:N` (forward, LoRA, full and Fisher, f32;
    /// Forge needs a build with `--features cuda`, PyTorch a CUDA build of torch).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute threads per process (RAYON_NUM_THREADS for Forge, torch.set_num_threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Write the report (runs and rows) to this JSON file, atomically.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Check the ratios against these thresholds (e.g. xtask/bench-gates.json); non-zero exit
    /// naming each one exceeded.
    #[arg(long)]
    gate: Option<PathBuf>,
    /// Read this report instead of running anything (to print or gate it again).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Run the criterion benchmarks instead; the arguments after `--` go to `cargo bench`.
    #[arg(long)]
    criterion: bool,
    /// A `libmkl_rt` (e.g. from `pip install mkl`) for Forge's f32 products: the workers run
    /// with `FORGE_MKL` set to it (forge-linalg's optional MKL backend). Without it they use
    /// the pure-Rust gemm crate (or whatever `FORGE_MKL` this process already has).
    #[arg(long)]
    mkl: Option<PathBuf>,
    /// Internal: run one Forge workload in this process and print its JSON line.
    #[arg(long, hide = true)]
    worker: bool,
    /// Arguments for `cargo bench` (with --criterion).
    #[arg(last = true)]
    criterion_args: Vec<String>,
}

/// Where the PyTorch reference script lives (in the source tree).
fn reference_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/torch_reference.py")
}

fn cpu_facts() -> (String, Vec<String>) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_bf16",
    ];
    let features = flags
        .split_whitespace()
        .filter(|f| wanted.contains(f))
        .map(String::from)
        .collect();
    (field("model name"), features)
}

fn parse_last_json_line(stdout: &[u8], what: &str) -> Result<SpeedRun> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{what} printed nothing on stdout"))?;
    serde_json::from_str(line).with_context(|| format!("{what}: not a timing line: {line}"))
}

fn run_forge(
    model: BenchModel,
    workload: Workload,
    precision: &str,
    a: &BenchArgs,
) -> Result<SpeedRun> {
    let exe = std::env::current_exe().context("locate the xtask binary")?;
    let mut cmd = Command::new(exe);
    if let Some(p) = &a.mkl {
        cmd.env(forge_linalg::mkl::ENV, p);
    }
    let o = cmd
        .args(["bench", "--worker", "--model", model.name()])
        .args(["--workload", workload.name(), "--precision", precision])
        .args([
            "--iters",
            &a.iters.to_string(),
            "--warmup",
            &a.warmup.to_string(),
        ])
        .args(["--batch", &a.batch.to_string(), "--seq", &a.seq.to_string()])
        .args(["--device", &a.device])
        .env("RAYON_NUM_THREADS", a.threads.to_string())
        .output()
        .context("start the Forge bench worker")?;
    if !o.status.success() {
        bail!(
            "Forge {} {} {precision} failed ({}): {}",
            model.name(),
            workload.name(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    parse_last_json_line(&o.stdout, "the Forge worker")
}

fn run_torch(
    python: &Path,
    model: BenchModel,
    workload: Workload,
    precision: &str,
    a: &BenchArgs,
) -> Result<SpeedRun> {
    let script = reference_script();
    let o = Command::new(python)
        .arg(&script)
        .args(["--model", model.name(), "--workload", workload.name()])
        .args(["--precision", precision])
        .args([
            "--iters",
            &a.iters.to_string(),
            "--warmup",
            &a.warmup.to_string(),
        ])
        .args(["--threads", &a.threads.to_string()])
        .args(["--batch", &a.batch.to_string(), "--seq", &a.seq.to_string()])
        .args(["--device", &a.device])
        .env("OMP_NUM_THREADS", a.threads.to_string())
        .output()
        .with_context(|| format!("start {} {}", python.display(), script.display()))?;
    if !o.status.success() {
        bail!(
            "PyTorch reference {} {} {precision} failed ({}): {}",
            model.name(),
            workload.name(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    parse_last_json_line(&o.stdout, "the PyTorch reference")
}

fn worker(a: &BenchArgs) -> Result<()> {
    let model = BenchModel::from_name(a.models.first().context("--model")?)?;
    let workload = Workload::from_name(a.workloads.first().context("--workload")?)?;
    let sc = speed_config(a)?;
    let precision: forge_bench::speed::MatmulPrecision = a.precision.parse()?;
    let run = forge_bench::speed::run_workload_at(model, None, workload, &sc, precision)?;
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

fn speed_config(a: &BenchArgs) -> Result<SpeedConfig> {
    Ok(SpeedConfig {
        batch: a.batch,
        seq: a.seq,
        warmup: a.warmup,
        iters: a.iters,
        seed: 0,
        cuda: parse_device(&a.device)?,
    })
}

/// `cpu` -> None, `cuda` -> Some(0), `cuda:N` -> Some(N).
fn parse_device(s: &str) -> Result<Option<usize>> {
    match s {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Ok(Some(i)),
            _ => bail!("--device {s:?}: expected cpu, cuda or cuda:N"),
        },
    }
}

/// Runs `cargo xtask bench`.
pub fn bench(a: BenchArgs) -> Result<()> {
    if a.criterion {
        return criterion(&a.criterion_args);
    }
    if a.worker {
        return worker(&a);
    }
    if a.iters == 0 || a.rounds == 0 || a.threads == 0 {
        bail!("--iters, --rounds and --threads must be at least 1");
    }
    let report = match &a.from {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            let r: SpeedReport = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a bench report", p.display()))?;
            if r.schema != SPEED_SCHEMA {
                bail!(
                    "{}: schema {:?}, this build reads {SPEED_SCHEMA:?}",
                    p.display(),
                    r.schema
                );
            }
            r
        }
        None => measure(&a)?,
    };
    if let Some(out) = &a.out {
        forge_bench::io::write_json(out, &report)?;
        eprintln!("wrote {}", out.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}), {} thread(s), batch {} x seq {}, {} timed iteration(s) after {} warm-up, {} round(s); times are medians\n",
            report.cpu_model,
            report.cpu_features.join(" "),
            report.threads,
            report.config.batch,
            report.config.seq,
            report.config.iters,
            report.config.warmup,
            report.rounds
        );
        let mut gemms: Vec<&str> = report
            .runs
            .iter()
            .filter_map(|r| r.f32_gemm.as_deref())
            .collect();
        gemms.sort_unstable();
        gemms.dedup();
        if !gemms.is_empty() {
            println!("Forge's f32 products: {}\n", gemms.join("; "));
        }
        print!("{}", speed_table(&report.rows));
    }
    if let Some(g) = &a.gate {
        let text = std::fs::read_to_string(g).with_context(|| format!("read {}", g.display()))?;
        let gates: SpeedGates = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a speed-gates file", g.display()))?;
        let (failures, checked) = check_speed_gates(&report.rows, &gates);
        if !failures.is_empty() {
            bail!(
                "{} of {checked} speed threshold(s) exceeded:\n  {}",
                failures.len(),
                failures.join("\n  ")
            );
        }
        eprintln!("speed gates: {checked} threshold(s) met");
    }
    Ok(())
}

fn measure(a: &BenchArgs) -> Result<SpeedReport> {
    let models: Vec<BenchModel> = if a.models.is_empty() {
        BenchModel::ALL.to_vec()
    } else {
        a.models
            .iter()
            .map(|m| BenchModel::from_name(m))
            .collect::<forge_bench::Result<_>>()?
    };
    let workloads: Vec<Workload> = if a.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        a.workloads
            .iter()
            .map(|w| Workload::from_name(w))
            .collect::<forge_bench::Result<_>>()?
    };
    if let Some(p) = &a.mkl {
        // fail here, naming the file, rather than in every worker
        forge_linalg::mkl::load(p).with_context(|| format!("--mkl {}", p.display()))?;
    }
    if let Some(p) = &a.python {
        let script = reference_script();
        if !script.is_file() {
            bail!(
                "the PyTorch reference script {} is missing",
                script.display()
            );
        }
        let probe = Command::new(p)
            .args(["-c", "import torch, transformers, peft"])
            .output()
            .with_context(|| format!("--python {}: cannot run it", p.display()))?;
        if !probe.status.success() {
            bail!(
                "--python {}: torch, transformers and peft must import (pip install torch transformers peft): {}",
                p.display(),
                String::from_utf8_lossy(&probe.stderr).trim()
            );
        }
    }
    let config = speed_config(a)?;
    // every run this bench would start can run on the device (fail before the first)
    for &workload in &workloads {
        check_device(config.cuda, workload, MatmulPrecision::F32)?;
        if a.bf16 && is_amp(workload) {
            check_device(config.cuda, workload, MatmulPrecision::Bf16)?;
        }
    }
    let mut runs = Vec::new();
    for &model in &models {
        for &workload in &workloads {
            for round in 0..a.rounds {
                eprintln!(
                    "[{} {} round {}/{}] forge ...",
                    model.name(),
                    workload.name(),
                    round + 1,
                    a.rounds
                );
                runs.push(run_forge(model, workload, "f32", a)?);
                let amp = is_amp(workload);
                if a.bf16 && amp {
                    eprintln!("  forge bf16 ...");
                    runs.push(run_forge(model, workload, "bf16", a)?);
                }
                if let Some(p) = &a.python {
                    eprintln!("  pytorch f32 ...");
                    runs.push(run_torch(p, model, workload, "f32", a)?);
                    if a.bf16 && amp {
                        eprintln!("  pytorch bf16 ...");
                        runs.push(run_torch(p, model, workload, "bf16", a)?);
                    }
                }
            }
        }
    }
    let (cpu_model, cpu_features) = cpu_facts();
    Ok(SpeedReport {
        schema: SPEED_SCHEMA.into(),
        cpu_model,
        cpu_features,
        config,
        threads: a.threads,
        rounds: a.rounds,
        rows: speed_rows(&runs),
        runs,
    })
}

/// The workloads with a bf16 mode (Forge's) and an autocast(bf16) run (PyTorch's).
fn is_amp(workload: Workload) -> bool {
    matches!(
        workload,
        Workload::Forward | Workload::Lora | Workload::Full
    )
}

fn criterion(args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("bench")
        .args(args)
        .status()
        .context("run cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_device;

    #[test]
    fn device_names() {
        assert_eq!(parse_device("cpu").unwrap(), None);
        assert_eq!(parse_device("cuda").unwrap(), Some(0));
        assert_eq!(parse_device("cuda:3").unwrap(), Some(3));
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA"] {
            let e = parse_device(bad).unwrap_err().to_string();
            assert!(e.contains("cpu, cuda or cuda:N"), "{e}");
        }
    }
}
