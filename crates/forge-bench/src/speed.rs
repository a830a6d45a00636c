//! Training-speed workloads for `cargo xtask bench`: Forge's forward pass, LoRA step, full
//! fine-tuning step, Fisher batch and TIES merge at DistilBERT-base and MiniLM dimensions, defined
//! exactly as the committed PyTorch reference (`xtask/bench/torch_reference.py`) defines them, so
//! the two can be run side by side and compared as ratios.
//!
//! Every workload runs on a randomly initialised model (no weights needed) and a synthetic batch
//! (ids uniform in the vocabulary with `[CLS]` = 101 first, an all-ones mask, labels in {0, 1}).
//! One timed iteration is:
//!
//! - `forward`: evaluation mode, logits of the batch;
//! - `full`: training mode (dropout on), cross-entropy, backward, Forge's AdamW (lr 2e-5,
//!   weight decay 0.01, biases and norms without decay as the training API does);
//! - `lora`: LoRA r4, alpha 8, dropout 0.1 on the query and value projections (Hu et al. 2022),
//!   head trained in full (as PEFT's `SEQ_CLS` task type: DistilBERT's `pre_classifier` and
//!   `classifier`, BERT's `classifier`), AdamW lr 1e-3; the same step as `full`;
//! - `fisher`: the mini-batch diagonal Fisher estimator (Kirkpatrick et al. 2017) of
//!   forge-ewc over the batch, evaluation mode;
//! - `merge`: a TIES merge (Yadav et al. 2023; density 0.5, weights 1) of two perturbed copies of
//!   the model into it, over the whole state dict, with forge-merge.
//!
//! Each run is meant for a fresh process (peak RSS is a per-process figure): `cargo xtask bench`
//! starts one per workload.

use std::time::Instant;

use candle_core::{Device, Tensor};
pub use forge_linalg::bf16::MatmulPrecision;
use forge_lora::{LoraConfig, LoraInjector};
use forge_models::train::{cross_entropy_loss, default_groups, AdamW, AdamWParams};
use forge_models::{AnyClassifier, ModelConfig, SequenceClassifier};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// The model dimensions a workload runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BenchModel {
    /// DistilBERT-base: 6 layers, 768 wide, 12 heads, FFN 3,072 (66M parameters).
    #[serde(rename = "distilbert-base")]
    DistilBertBase,
    /// all-MiniLM-L6-v2's BERT: 6 layers, 384 wide, 12 heads, FFN 1,536 (22.7M parameters).
    #[serde(rename = "minilm")]
    MiniLm,
}

impl BenchModel {
    /// All models, in table order.
    pub const ALL: [BenchModel; 2] = [BenchModel::DistilBertBase, BenchModel::MiniLm];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::DistilBertBase => "distilbert-base",
            BenchModel::MiniLm => "minilm",
        }
    }

    /// Parse [`BenchModel::name`].
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] naming the accepted values.
    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                config_error(
                    "--model",
                    format!("unknown bench model '{s}' (known: distilbert-base, minilm)"),
                )
            })
    }

    /// The model's config (two labels).
    pub fn config(self) -> ModelConfig {
        let json = match self {
            BenchModel::DistilBertBase => r#"{"model_type": "distilbert", "num_labels": 2}"#,
            BenchModel::MiniLm => {
                r#"{"model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
                "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
                "max_position_embeddings": 512, "type_vocab_size": 2, "num_labels": 2}"#
            }
        };
        ModelConfig::from_json_str(json, std::path::Path::new("<bench config>"))
            .expect("the bench configs are valid")
    }

    /// LoRA target modules (the query and value projections).
    pub fn lora_targets(self) -> &'static [&'static str] {
        match self {
            BenchModel::DistilBertBase => &["q_lin", "v_lin"],
            BenchModel::MiniLm => &["query", "value"],
        }
    }

    /// Modules trained in full next to the adapters, as PEFT's `SEQ_CLS` task type picks them
    /// (names ending in `classifier`: DistilBERT's `pre_classifier` too).
    pub fn lora_modules_to_save(self) -> &'static [&'static str] {
        match self {
            BenchModel::DistilBertBase => &["pre_classifier", "classifier"],
            BenchModel::MiniLm => &["classifier"],
        }
    }
}

/// What one timed iteration does (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Evaluation-mode forward pass.
    Forward,
    /// LoRA r4 q/v training step.
    Lora,
    /// Full fine-tuning step.
    Full,
    /// Mini-batch diagonal Fisher.
    Fisher,
    /// TIES merge of two models into a base.
    Merge,
}

impl Workload {
    /// All workloads, in table order.
    pub const ALL: [Workload; 5] = [
        Workload::Forward,
        Workload::Lora,
        Workload::Full,
        Workload::Fisher,
        Workload::Merge,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Forward => "forward",
            Workload::Lora => "lora",
            Workload::Full => "full",
            Workload::Fisher => "fisher",
            Workload::Merge => "merge",
        }
    }

    /// A label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Forward => "forward (eval)",
            Workload::Lora => "LoRA r4 q/v step",
            Workload::Full => "full fine-tuning step",
            Workload::Fisher => "Fisher batch",
            Workload::Merge => "TIES merge",
        }
    }

    /// Parse [`Workload::name`].
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] naming the accepted values.
    pub fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                config_error(
                    "--workload",
                    format!("unknown workload '{s}' (known: forward, lora, full, fisher, merge)"),
                )
            })
    }
}

/// Sizes and repetitions of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedConfig {
    /// Sequences per batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub iters: usize,
    /// Seed of the model and the batch.
    pub seed: u64,
    /// The CUDA device to run on (its ordinal); `None`: the CPU. Needs a build with the `cuda`
    /// feature; forward, LoRA, full and Fisher only (the merge and the bf16 mode are CPU work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<usize>,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        Self {
            batch: 16,
            seq: 64,
            warmup: 1,
            iters: 5,
            seed: 0,
            cuda: None,
        }
    }
}

/// The timings of one workload (one line of `cargo xtask bench`'s JSON, the same keys as the
/// PyTorch reference writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedRun {
    /// `forge` or `pytorch`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// [`BenchModel::name`].
    pub model: String,
    /// [`Workload::name`].
    pub workload: String,
    /// `f32` or `bf16`.
    pub precision: String,
    /// Compute threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Wall time of each timed iteration, ms.
    pub wall_ms: Vec<f64>,
    /// Process CPU time (all threads) of each timed iteration, ms.
    pub cpu_ms: Vec<f64>,
    /// Peak resident memory of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Parameters of the model.
    pub params: usize,
    /// Parameters the workload trains (all for forward / Fisher / merge).
    pub trainable: usize,
    /// Forge in the bf16 mode: the instruction path of its products (`amx`, `avx512`, `f32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_path: Option<String>,
    /// Forge: the backend of its f32 products ("gemm crate", or "MKL (<version>)" when
    /// `FORGE_MKL` loaded one; [`forge_linalg::mkl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f32_gemm: Option<String>,
    /// The accelerator the run used (`cuda:0`); absent for the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl SpeedRun {
    /// Median wall time, ms (NaN when there is no iteration).
    pub fn median_wall_ms(&self) -> f64 {
        median(&self.wall_ms)
    }

    /// Median CPU time, ms.
    pub fn median_cpu_ms(&self) -> f64 {
        median(&self.cpu_ms)
    }

    /// CPU time over wall time: how many cores the workload kept busy.
    pub fn cpu_utilisation(&self) -> f64 {
        let (c, w): (f64, f64) = (self.cpu_ms.iter().sum(), self.wall_ms.iter().sum());
        if w > 0.0 {
            c / w
        } else {
            f64::NAN
        }
    }
}

/// The median of `xs` (NaN for none).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// CPU seconds used by this process so far (all threads, user + system).
pub fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Peak resident memory of this process so far, bytes (`getrusage` `ru_maxrss`).
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_maxrss.max(0) as u64 * 1024
}

fn config_error(name: &str, reason: String) -> BenchError {
    BenchError::InvalidConfig {
        name: name.into(),
        reason,
    }
}

fn batch(model: &ModelConfig, c: &SpeedConfig, dev: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let vocab = match model {
        ModelConfig::DistilBert(m) => m.vocab_size,
        ModelConfig::Bert(m) => m.vocab_size,
    };
    Ok(forge_models::perf::synthetic_batch(
        c.batch, c.seq, vocab, 2, c.seed, dev,
    )?)
}

/// Run `workload` at `model`'s dimensions (f32, CPU) and time it. `config` overrides the model's
/// dimensions (tests use a tiny one); `None` uses [`BenchModel::config`].
///
/// # Errors
/// Model, training or merge errors; [`BenchError::InvalidConfig`] for zero iterations.
pub fn run_workload(
    model: BenchModel,
    config: Option<&ModelConfig>,
    workload: Workload,
    sc: &SpeedConfig,
) -> Result<SpeedRun> {
    run_workload_at(model, config, workload, sc, MatmulPrecision::F32)
}

/// [`run_workload`] with Forge's dense products at `precision`
/// ([`forge_linalg::bf16::MatmulPrecision::Bf16`]: the bf16 mixed-precision mode; the run's
/// `precision` is then `bf16` and `bf16_path` names the instruction path).
///
/// # Errors
/// As [`run_workload`].
pub fn run_workload_at(
    model: BenchModel,
    config: Option<&ModelConfig>,
    workload: Workload,
    sc: &SpeedConfig,
    precision: MatmulPrecision,
) -> Result<SpeedRun> {
    check_device(sc.cuda, workload, precision)?;
    let mut run = forge_linalg::bf16::with_matmul_precision(precision, || {
        run_workload_f32(model, config, workload, sc)
    })?;
    if precision == MatmulPrecision::Bf16 {
        run.precision = "bf16".into();
        run.bf16_path = Some(forge_linalg::bf16::Bf16Path::detect().name().into());
    }
    Ok(run)
}

fn run_workload_f32(
    model: BenchModel,
    config: Option<&ModelConfig>,
    workload: Workload,
    sc: &SpeedConfig,
) -> Result<SpeedRun> {
    if sc.iters == 0 || sc.batch == 0 || sc.seq == 0 {
        return Err(config_error(
            "speed config",
            "iterations, batch and sequence length must be positive".into(),
        ));
    }
    // the allocator setting every Forge training entry point applies
    forge_models::perf::tune_allocator();
    // run_workload_at checked the device against the workload
    let dev = bench_device(sc.cuda)?;
    let mc = config.cloned().unwrap_or_else(|| model.config());
    let (ids, mask, labels) = batch(&mc, sc, &dev)?;
    let mut m = AnyClassifier::from_config(&mc, sc.seed, &dev)?;
    let params = forge_lora::count_parameters(&mut m).total;
    let mut trainable = params;
    let mut step: Box<dyn FnMut() -> Result<()>> = match workload {
        Workload::Forward => {
            m.set_training(false);
            // inference as PyTorch's torch.inference_mode(): no graph recorded
            Box::new(move || {
                forge_lora::no_grad(|| m.forward(&ids, Some(&mask)))?;
                Ok(())
            })
        }
        Workload::Full | Workload::Lora => {
            let lr = if workload == Workload::Lora {
                LoraInjector::new(
                    LoraConfig::new(4, 8.0, model.lora_targets())
                        .with_dropout(0.1)
                        .with_modules_to_save(model.lora_modules_to_save()),
                )?
                .inject(&mut m)?;
                trainable = forge_lora::count_parameters(&mut m).trainable;
                1e-3
            } else {
                2e-5
            };
            m.set_training(true);
            let mut opt = AdamW::new(default_groups(&mut m, lr, 0.01), AdamWParams::default())?;
            Box::new(move || {
                let logits = m.forward(&ids, Some(&mask))?;
                let loss = cross_entropy_loss(&logits, &labels)?;
                let grads = loss.backward()?;
                opt.step(&grads, 1.0)?;
                Ok(())
            })
        }
        Workload::Fisher => {
            m.set_training(false);
            let vars = forge_lora::named_trainable(&mut m);
            let label_vec: Vec<usize> = labels
                .to_vec1::<u32>()?
                .into_iter()
                .map(|l| l as usize)
                .collect();
            let fc = forge_ewc::FisherConfig::new(forge_ewc::FisherEstimator::Batch {
                batch_size: sc.batch,
            });
            Box::new(move || {
                let logits = |idx: &[usize]| -> candle_core::Result<Tensor> {
                    let rows = Tensor::new(
                        idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                        ids.device(),
                    )?;
                    m.forward(
                        &ids.index_select(&rows, 0)?,
                        Some(&mask.index_select(&rows, 0)?),
                    )
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
                };
                forge_ewc::fisher_diagonal(
                    &vars,
                    forge_ewc::Targets::Labels(&label_vec),
                    logits,
                    &fc,
                )?;
                Ok(())
            })
        }
        Workload::Merge => {
            use forge_models::StateDict as _;
            let base = m.state_dict()?;
            let perturbed = |k: u64| -> Result<Vec<(String, Tensor)>> {
                let mut rng = forge_linalg::seeded_rng(sc.seed.wrapping_add(k));
                base.iter()
                    .map(|(n, t)| {
                        let noise =
                            forge_linalg::rng::randn(t.dims(), t.dtype(), t.device(), &mut rng)?;
                        Ok((n.clone(), (t + (noise * 0.01)?)?))
                    })
                    .collect()
            };
            let models = vec![
                forge_merge::StateDict::new("base", base.clone()),
                forge_merge::StateDict::new("a", perturbed(1)?),
                forge_merge::StateDict::new("b", perturbed(2)?),
            ];
            let yaml = "merge_method: ties\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: 1.0, density: 0.5}\n  - model: b\n    parameters: {weight: 1.0, density: 0.5}\n";
            let cfg = forge_merge::MergeConfig::from_yaml(yaml)?;
            Box::new(move || {
                forge_merge::merge_state_dicts(&cfg, &models, &Device::Cpu)?;
                Ok(())
            })
        }
    };
    for _ in 0..sc.warmup {
        step()?;
        dev.synchronize()?;
    }
    let (mut wall_ms, mut cpu_ms) = (Vec::new(), Vec::new());
    for _ in 0..sc.iters {
        let (t, c) = (Instant::now(), process_cpu_s());
        step()?;
        // an accelerator's kernels run asynchronously: the iteration ends when they have
        dev.synchronize()?;
        wall_ms.push(t.elapsed().as_secs_f64() * 1e3);
        cpu_ms.push((process_cpu_s() - c) * 1e3);
    }
    Ok(SpeedRun {
        implementation: "forge".into(),
        model: model.name().into(),
        workload: workload.name().into(),
        precision: "f32".into(),
        threads: candle_core::utils::get_num_threads(),
        batch: sc.batch,
        seq: sc.seq,
        wall_ms,
        cpu_ms,
        peak_rss_bytes: peak_rss_bytes(),
        params,
        trainable,
        bf16_path: None,
        f32_gemm: Some(forge_linalg::mkl::describe(forge_linalg::mkl::status())),
        device: sc.cuda.map(|i| format!("cuda:{i}")),
    })
}

/// Whether `workload` at `precision` can run on CUDA device `cuda` (`None`: the CPU, where
/// everything runs): on CUDA only f32 forward, LoRA, full and Fisher (the bf16 mode is Forge's
/// CPU mixed precision, the merge is CPU work). `cargo xtask bench` checks every run with this
/// before it starts any.
///
/// # Errors
/// [`BenchError::InvalidConfig`] naming what runs on the CPU only.
pub fn check_device(
    cuda: Option<usize>,
    workload: Workload,
    precision: MatmulPrecision,
) -> Result<()> {
    let Some(i) = cuda else {
        return Ok(());
    };
    if precision == MatmulPrecision::Bf16 {
        return Err(config_error(
            "--device",
            format!("cuda:{i}: the bf16 mode is Forge's CPU mixed precision; time f32 on CUDA"),
        ));
    }
    if workload == Workload::Merge {
        return Err(config_error(
            "--device",
            format!(
                "cuda:{i}: the merge workload runs on the CPU only (choose the others: \
                 --workload forward --workload lora --workload full --workload fisher)"
            ),
        ));
    }
    Ok(())
}

/// The device of a run: the CPU, or CUDA device `cuda` (after [`check_device`]).
fn bench_device(cuda: Option<usize>) -> Result<Device> {
    let Some(i) = cuda else {
        return Ok(Device::Cpu);
    };
    Device::new_cuda(i).map_err(|e| {
        config_error(
            "--device",
            format!("cuda:{i}: {e} (build with `--features cuda` on a machine with CUDA)"),
        )
    })
}

/// One line of the side-by-side table: Forge against PyTorch on one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedRow {
    /// [`BenchModel::name`].
    pub model: String,
    /// [`Workload::name`].
    pub workload: String,
    /// Forge's precision (`f32`, or `bf16` for the mixed-precision mode).
    pub precision: String,
    /// Forge's median wall time, ms (the best median over rounds).
    pub forge_ms: f64,
    /// Forge's CPU time over wall time.
    pub forge_cpu_util: f64,
    /// Forge's peak RSS, bytes (the lowest over rounds).
    pub forge_rss_bytes: u64,
    /// PyTorch's median wall time at the same precision, ms (`None` without `--python`).
    pub pytorch_ms: Option<f64>,
    /// PyTorch's CPU time over wall time.
    pub pytorch_cpu_util: Option<f64>,
    /// PyTorch's peak RSS, bytes.
    pub pytorch_rss_bytes: Option<u64>,
    /// `forge_ms / pytorch_ms` (below 1: Forge is faster).
    pub ratio: Option<f64>,
    /// `forge_rss_bytes / pytorch_rss_bytes`.
    pub rss_ratio: Option<f64>,
    /// PyTorch autocast(bf16) median wall time, ms, when it was run.
    pub pytorch_bf16_ms: Option<f64>,
}

/// What `cargo xtask bench --json` writes: the machine, the settings, every run and the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    /// `forge-speed/1`.
    pub schema: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPU features that select kernels (`avx512f`, `avx512_bf16`, `amx_bf16`, ...).
    pub cpu_features: Vec<String>,
    /// Sizes and repetitions.
    pub config: SpeedConfig,
    /// Compute threads per process.
    pub threads: usize,
    /// Alternating rounds per workload.
    pub rounds: usize,
    /// Every process's timings, in run order.
    pub runs: Vec<SpeedRun>,
    /// The comparison.
    pub rows: Vec<SpeedRow>,
}

/// The report's schema tag.
pub const SPEED_SCHEMA: &str = "forge-speed/1";

fn best<'a>(runs: impl Iterator<Item = &'a SpeedRun>) -> Option<(f64, f64, u64)> {
    runs.fold(None, |acc: Option<(f64, f64, u64)>, r| {
        let m = r.median_wall_ms();
        match acc {
            Some((bm, u, rss)) if bm <= m => Some((bm, u, rss.min(r.peak_rss_bytes))),
            Some((_, _, rss)) => Some((m, r.cpu_utilisation(), rss.min(r.peak_rss_bytes))),
            None => Some((m, r.cpu_utilisation(), r.peak_rss_bytes)),
        }
    })
}

/// The rows of `runs`: for each (model, workload, precision) Forge ran, its best median over
/// rounds against PyTorch's at the same precision (the least loaded round of each counts, as
/// both are run alternately in one sitting), plus PyTorch's bf16 time when present.
pub fn speed_rows(runs: &[SpeedRun]) -> Vec<SpeedRow> {
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in runs.iter().filter(|r| r.implementation == "forge") {
        let k = (r.model.clone(), r.workload.clone(), r.precision.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .filter_map(|(model, workload, precision)| {
            let of = |imp: &'static str, prec: &'static str| {
                let (model, workload, precision) = (&model, &workload, &precision);
                runs.iter().filter(move |r| {
                    r.implementation == imp
                        && &r.model == model
                        && &r.workload == workload
                        && (if prec.is_empty() {
                            &r.precision == precision
                        } else {
                            r.precision == prec
                        })
                })
            };
            let (forge_ms, forge_cpu_util, forge_rss_bytes) = best(of("forge", ""))?;
            let torch = best(of("pytorch", ""));
            let torch_bf16 = best(of("pytorch", "bf16")).map(|t| t.0);
            Some(SpeedRow {
                forge_ms,
                forge_cpu_util,
                forge_rss_bytes,
                pytorch_ms: torch.map(|t| t.0),
                pytorch_cpu_util: torch.map(|t| t.1),
                pytorch_rss_bytes: torch.map(|t| t.2),
                ratio: torch.map(|t| forge_ms / t.0),
                rss_ratio: torch.map(|t| forge_rss_bytes as f64 / t.2 as f64),
                pytorch_bf16_ms: torch_bf16,
                model,
                workload,
                precision,
            })
        })
        .collect()
}

/// Regression thresholds on the ratios (`xtask/bench-gates.json`): a key is
/// `model/workload/precision`; a row without PyTorch timings is not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeedGates {
    /// Why the numbers are what they are.
    #[serde(default)]
    pub comment: String,
    /// Largest accepted `forge_ms / pytorch_ms`.
    #[serde(default)]
    pub max_ratio: std::collections::BTreeMap<String, f64>,
    /// Largest accepted `forge_rss / pytorch_rss`.
    #[serde(default)]
    pub max_rss_ratio: std::collections::BTreeMap<String, f64>,
}

/// The key of a row in [`SpeedGates`].
pub fn gate_key(row: &SpeedRow) -> String {
    format!("{}/{}/{}", row.model, row.workload, row.precision)
}

/// Check `rows` against `gates`; returns one line per violated threshold (empty: all hold) and
/// the number of thresholds checked.
pub fn check_speed_gates(rows: &[SpeedRow], gates: &SpeedGates) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in rows {
        let key = gate_key(row);
        for (what, limit, value) in [
            ("time ratio", gates.max_ratio.get(&key), row.ratio),
            (
                "peak RSS ratio",
                gates.max_rss_ratio.get(&key),
                row.rss_ratio,
            ),
        ] {
            if let (Some(&limit), Some(value)) = (limit, value) {
                checked += 1;
                // a NaN ratio fails too
                let holds = value.partial_cmp(&limit).is_some_and(|o| o.is_le());
                if !holds {
                    failures.push(format!(
                        "{key}: {what} {value:.3} exceeds the gate {limit:.3}"
                    ));
                }
            }
        }
    }
    (failures, checked)
}

fn gib(b: u64) -> String {
    format!("{:.2}", b as f64 / (1u64 << 30) as f64)
}

/// The side-by-side table as Markdown.
pub fn speed_table(rows: &[SpeedRow]) -> String {
    let mut s = String::from(
        "| model | workload | precision | Forge (ms) | PyTorch (ms) | ratio | PyTorch bf16 (ms) | Forge CPU/wall | PyTorch CPU/wall | Forge peak RSS (GiB) | PyTorch peak RSS (GiB) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".into(), f);
    for r in rows {
        let label = match Workload::from_name(&r.workload) {
            Ok(w) => w.label().to_string(),
            Err(_) => r.workload.clone(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} | {} | {} | {} |\n",
            r.model,
            label,
            r.precision,
            r.forge_ms,
            opt(r.pytorch_ms, &|v| format!("{v:.0}")),
            opt(r.ratio, &|v| format!("{v:.2}x")),
            opt(r.pytorch_bf16_ms, &|v| format!("{v:.0}")),
            r.forge_cpu_util,
            opt(r.pytorch_cpu_util, &|v| format!("{v:.2}")),
            gib(r.forge_rss_bytes),
            r.pytorch_rss_bytes.map_or("-".into(), gib),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(imp: &str, prec: &str, wall: &[f64], rss: u64) -> SpeedRun {
        SpeedRun {
            implementation: imp.into(),
            model: "minilm".into(),
            workload: "forward".into(),
            precision: prec.into(),
            threads: 2,
            batch: 16,
            seq: 64,
            wall_ms: wall.to_vec(),
            cpu_ms: wall.iter().map(|w| 2.0 * w).collect(),
            peak_rss_bytes: rss,
            params: 10,
            trainable: 10,
            bf16_path: None,
            f32_gemm: None,
            device: None,
        }
    }

    #[test]
    fn rows_take_the_best_round_and_gates_catch_a_regression() {
        let runs = vec![
            run("forge", "f32", &[120.0, 100.0, 110.0], 900),
            run("pytorch", "f32", &[50.0, 52.0, 51.0], 1000),
            run("forge", "f32", &[90.0, 95.0, 300.0], 800),
            run("pytorch", "f32", &[60.0, 61.0, 59.0], 1100),
            run("pytorch", "bf16", &[20.0], 1000),
        ];
        let rows = speed_rows(&runs);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.forge_ms, 95.0);
        assert_eq!(r.pytorch_ms, Some(51.0));
        assert!((r.ratio.unwrap() - 95.0 / 51.0).abs() < 1e-12);
        assert_eq!((r.forge_rss_bytes, r.pytorch_rss_bytes), (800, Some(1000)));
        assert_eq!(r.pytorch_bf16_ms, Some(20.0));
        assert!((r.forge_cpu_util - 2.0).abs() < 1e-12);

        let mut g = SpeedGates::default();
        g.max_ratio.insert("minilm/forward/f32".into(), 2.0);
        g.max_rss_ratio.insert("minilm/forward/f32".into(), 1.0);
        assert_eq!(check_speed_gates(&rows, &g), (vec![], 2));
        g.max_ratio.insert("minilm/forward/f32".into(), 1.5);
        let (fails, n) = check_speed_gates(&rows, &g);
        assert_eq!(n, 2);
        assert_eq!(fails.len(), 1, "{fails:?}");
        assert!(
            fails[0].contains("minilm/forward/f32: time ratio 1.863"),
            "{}",
            fails[0]
        );
        assert!(
            speed_table(&rows).contains("| minilm | forward (eval) | f32 | 95 | 51 | 1.86x | 20 |")
        );
    }

    #[test]
    fn a_forge_bf16_run_gets_its_own_row_against_autocast() {
        let mut bf = run("forge", "bf16", &[30.0], 700);
        bf.bf16_path = Some("amx".into());
        let runs = vec![
            run("forge", "f32", &[100.0], 900),
            run("pytorch", "f32", &[50.0], 1000),
            bf,
            run("pytorch", "bf16", &[20.0], 1000),
        ];
        let rows = speed_rows(&runs);
        assert_eq!(rows.len(), 2);
        let r = &rows[1];
        assert_eq!((r.precision.as_str(), r.pytorch_ms), ("bf16", Some(20.0)));
        assert!(
            (r.ratio.unwrap() - 1.5).abs() < 1e-12,
            "Forge bf16 / autocast"
        );
        // a line from before the field existed still reads
        let mut v = serde_json::to_value(&runs[0]).unwrap();
        assert!(v.get("bf16_path").is_none());
        v.as_object_mut().unwrap().remove("bf16_path");
        let back: SpeedRun = serde_json::from_value(v).unwrap();
        assert_eq!(back.bf16_path, None);
    }

    /// A two-layer BERT small enough for every workload in a unit test.
    fn tiny() -> ModelConfig {
        ModelConfig::from_json_str(
            r#"{"model_type": "bert", "vocab_size": 200, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64, "type_vocab_size": 2, "num_labels": 2}"#,
            std::path::Path::new("tiny"),
        )
        .unwrap()
    }

    #[test]
    fn every_workload_runs_on_a_tiny_model() {
        let tiny = tiny();
        let sc = SpeedConfig {
            batch: 2,
            seq: 8,
            warmup: 0,
            iters: 2,
            seed: 0,
            cuda: None,
        };
        let r = run_workload_at(
            BenchModel::MiniLm,
            Some(&tiny),
            Workload::Lora,
            &sc,
            MatmulPrecision::Bf16,
        )
        .unwrap();
        assert_eq!(r.precision, "bf16");
        assert!(r.bf16_path.is_some());
        for w in Workload::ALL {
            let r = run_workload(BenchModel::MiniLm, Some(&tiny), w, &sc).unwrap();
            assert_eq!(r.wall_ms.len(), 2, "{w:?}");
            assert!(r.wall_ms.iter().all(|t| t.is_finite() && *t >= 0.0));
            assert!(r.peak_rss_bytes > 0);
            if w == Workload::Lora {
                assert!(r.trainable < r.params, "LoRA trains a fraction");
            } else {
                assert_eq!(r.trainable, r.params);
            }
        }
        assert!(BenchModel::from_name("gpt").is_err());
        assert!(Workload::from_name("backward").is_err());
        let zero = SpeedConfig { iters: 0, ..sc };
        assert!(run_workload(BenchModel::MiniLm, Some(&tiny), Workload::Forward, &zero).is_err());
        assert!(r.device.is_none());
    }

    #[test]
    fn cuda_runs_refuse_cpu_only_work_and_name_the_feature() {
        let tiny = tiny();
        let sc = SpeedConfig {
            batch: 2,
            seq: 4,
            warmup: 0,
            iters: 1,
            seed: 0,
            cuda: Some(0),
        };
        let msg = |w, p| {
            run_workload_at(BenchModel::MiniLm, Some(&tiny), w, &sc, p)
                .unwrap_err()
                .to_string()
        };
        assert!(msg(Workload::Merge, MatmulPrecision::F32).contains("CPU only"));
        assert!(msg(Workload::Forward, MatmulPrecision::Bf16).contains("bf16 mode"));
        // the check itself: everything on the CPU, f32 forward/LoRA/full/Fisher on CUDA
        for w in Workload::ALL {
            for p in [MatmulPrecision::F32, MatmulPrecision::Bf16] {
                assert!(check_device(None, w, p).is_ok());
                let cuda_ok = p == MatmulPrecision::F32 && w != Workload::Merge;
                assert_eq!(check_device(Some(1), w, p).is_ok(), cuda_ok, "{w:?} {p:?}");
            }
        }
        // this build has no CUDA (or this machine no GPU): a clear error, not a panic
        if !candle_core::utils::cuda_is_available() {
            assert!(msg(Workload::Forward, MatmulPrecision::F32).contains("--features cuda"));
        }
        // the device is recorded only for accelerator runs, and old reports still parse
        let cfg: SpeedConfig =
            serde_json::from_str(r#"{"batch":1,"seq":2,"warmup":0,"iters":1,"seed":0}"#).unwrap();
        assert_eq!(cfg.cuda, None);
        assert!(!serde_json::to_string(&SpeedConfig::default())
            .unwrap()
            .contains("cuda"));
    }
}
