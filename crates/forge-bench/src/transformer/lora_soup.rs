//! `sst2-lora-soup`: combining LoRA adapters without training them again. The rank-4 and rank-8
//! SST-2 adapters of `sst2-full-vs-lora` (reused when it ran in the same process), each alone,
//! against:
//!
//! - `soup`: a LoRA soup (Huang et al. 2023, "LoraHub"; Wortsman et al. 2022, model soups): the
//!   per-module updates `s_i B_i A_i` averaged (never A and B separately), written as one PEFT
//!   adapter in the exact concatenated form (rank 4 + 8), the heads (`modules_to_save`) averaged;
//! - `soup-r4`: the same soup re-compressed to rank 4 by a truncated SVD of each module's update;
//! - `lora-flow`: LoRA-Flow (Wang et al. 2024): the two adapters stay separate and a per-layer
//!   softmax gate over them, `w^l(x) = softmax(W^l x + b^l)` per token, is trained on a few SST-2
//!   training sentences with everything else frozen (the heads are the soup's averaged heads).
//!
//! The soups' cost is reading the adapters, combining them and loading the result (measured);
//! LoRA-Flow's is the gate's training. The two adapters' trainings are the source cost.

use super::shared::{self, FineTuned, Task, TaskData};
use super::strategy::{FineTune, LORA_LR};
use super::{model_and_tokenizer, TextSizes};
use crate::error::{BenchError, Result};
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{Config, MeasurePolicy, Measurement, Metric, StrategyKind, Wording};
use crate::Mode;
use forge_lora::{named_linears_mut, AdapterMixture, DeepClone, MixtureGate};
use forge_merge::lora::{merge_adapters, Adapter};
use forge_merge::{train_gate, GateTrainConfig, LoraFlowGate};
use forge_models::train::{evaluate, Batch};
use forge_models::transfer::freeze_all;
use forge_models::{AnyClassifier, ModelFiles, SequenceClassifier};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The scenario's name.
pub const SST2_LORA_SOUP: &str = "sst2-lora-soup";

/// LoRA-Flow gate training: AdamW learning rate.
const FLOW_LR: f64 = 1e-2;

/// Passes of the LoRA-Flow gate training over its sentences (fewer at smoke size, where the
/// adapters themselves train for only 25 steps).
fn flow_epochs(mode: Mode) -> usize {
    match mode {
        Mode::Quick => 5,
        Mode::Standard | Mode::Full => 10,
    }
}

/// Keys of the strategy outcomes' `extra_metrics`.
pub mod metric {
    /// Bytes of the adapter as written to disk (soups), or of the gate's parameters in f32.
    pub const STORAGE_BYTES: &str = "storage_bytes";
    /// Mean relative Frobenius error of the rank re-compression over the modules (`soup-r4`).
    pub const COMPRESSION_ERROR: &str = "compression_error";
    /// Mean weight of the rank-8 adapter in LoRA-Flow's gates over the evaluation sentences'
    /// tokens and gated layers (0.5 = an equal soup).
    pub const FLOW_WEIGHT_R8: &str = "flow_weight_r8";
    /// Sentences the LoRA-Flow gate was trained on.
    pub const FLOW_SAMPLES: &str = "flow_samples";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    R4,
    R8,
    Soup,
    SoupR4,
    Flow,
}

impl Strategy {
    const ALL: [Strategy; 5] = [
        Strategy::R4,
        Strategy::R8,
        Strategy::Soup,
        Strategy::SoupR4,
        Strategy::Flow,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::R4 => "lora-r4",
            Strategy::R8 => "lora-r8",
            Strategy::Soup => "soup",
            Strategy::SoupR4 => "soup-r4",
            Strategy::Flow => "lora-flow",
        }
    }

    fn spec(self) -> StrategySpec {
        let (kind, uses_source, text) = match self {
            Strategy::R4 => (
                StrategyKind::Baseline,
                false,
                "the rank-4 SST-2 adapter alone (its training)",
            ),
            Strategy::R8 => (
                StrategyKind::Reference,
                false,
                "the rank-8 SST-2 adapter alone (its training)",
            ),
            Strategy::Soup => (
                StrategyKind::Transfer,
                true,
                "LoRA soup: mean of the two adapters' B A per module, heads averaged",
            ),
            Strategy::SoupR4 => (
                StrategyKind::Transfer,
                true,
                "the soup re-compressed to rank 4 by SVD",
            ),
            Strategy::Flow => (
                StrategyKind::Transfer,
                true,
                "LoRA-Flow: a per-layer softmax gate over the two adapters trained on a few sentences (Wang et al. 2024)",
            ),
        };
        StrategySpec::new(self.name(), kind, uses_source, text)
    }

    fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: SST2_LORA_SOUP.into(),
                strategy: name.into(),
            })
    }
}

/// Sentences the LoRA-Flow gate is trained on.
fn flow_samples(mode: Mode) -> usize {
    match mode {
        Mode::Quick => 32,
        Mode::Standard => 64,
        Mode::Full => 128,
    }
}

/// Each adapter alone, a LoRA soup (exact and re-compressed) and LoRA-Flow (module docs).
#[derive(Debug, Clone, Default)]
pub struct Sst2LoraSoup;

impl Sst2LoraSoup {
    /// The scenario.
    pub fn new() -> Self {
        Self
    }
}

impl Scenario for Sst2LoraSoup {
    fn name(&self) -> &str {
        SST2_LORA_SOUP
    }
    fn description(&self) -> &str {
        "SST-2: LoRA r4 and r8 adapters alone, as a soup, and mixed by LoRA-Flow"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        Strategy::ALL.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "lora-flow"
    }
    fn in_quick(&self) -> bool {
        false
    }
    fn measure_policy(&self) -> MeasurePolicy {
        MeasurePolicy::Once
    }
    fn requires(&self) -> Requirements {
        shared::MODEL_AND_TEXT
    }
    fn wording(&self) -> Wording {
        Wording {
            baseline: "LoRA r4 adapter alone".into(),
            transfer: "LoRA-Flow".into(),
            curve_x: "training epochs".into(),
            protocol: "The LoRA r4 and r8 SST-2 adapters of sst2-full-vs-lora (their trainings \
                       are the source cost) combined without retraining: a LoRA soup (mean of \
                       the per-module updates B A, heads averaged; exact, or re-compressed to \
                       rank 4 by SVD), and LoRA-Flow (a per-layer, per-token softmax gate over \
                       the two adapters, trained at lr 1e-2 on 64 SST-2 training sentences for \
                       10 epochs in standard mode, 32 for 5 epochs in quick mode, with the \
                       encoder, adapters and averaged heads frozen). Accuracy on the SST-2 dev \
                       set."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        forge_models::perf::tune_allocator();
        let sizes = TextSizes::for_mode(ctx.mode);
        let (files, tok) = model_and_tokenizer(self.name(), ctx, sizes.max_length)?;
        let sst = shared::task_data(self.name(), ctx, Task::Sst2, &sizes, &tok, seed)?;
        let adapt = |rank| {
            shared::adapted(
                self.name(),
                ctx,
                Task::Sst2,
                &sizes,
                FineTune::Lora { rank },
                LORA_LR,
                seed,
                &sst,
            )
        };
        let r4 = adapt(4)?;
        let r8 = adapt(8)?;
        let tmp = tempfile::Builder::new()
            .prefix("forge-bench-lora-soup-")
            .tempdir()
            .map_err(|e| BenchError::io(std::env::temp_dir(), e))?;
        let dirs = [tmp.path().join("lora-r4"), tmp.path().join("lora-r8")];
        for (m, dir) in [&r4, &r8].into_iter().zip(&dirs) {
            let cfg = m.lora.as_ref().ok_or_else(|| {
                BenchError::config(
                    SST2_LORA_SOUP,
                    "a LoRA model came without its configuration",
                )
            })?;
            forge_lora::save_adapter(&mut m.model.try_clone_deep()?, cfg, dir)?;
        }
        let model_id = shared::model_id(ctx, &files);
        let n_flow = flow_samples(ctx.mode).min(sst.train.len());
        Ok(Box::new(SoupTrial {
            seed,
            sizes,
            files,
            model_id,
            sst,
            r4,
            r8,
            dirs,
            tmp,
            n_flow,
        }))
    }
}

struct SoupTrial {
    seed: u64,
    sizes: TextSizes,
    files: ModelFiles,
    model_id: String,
    sst: TaskData,
    r4: FineTuned,
    r8: FineTuned,
    dirs: [PathBuf; 2],
    tmp: tempfile::TempDir,
    n_flow: usize,
}

/// Running mean of the second adapter's gate weight over every gated layer call.
#[derive(Debug, Default)]
struct GateLog {
    sum_count: std::sync::Mutex<(f64, usize)>,
}

impl GateLog {
    fn record(&self, w: &candle_core::Tensor) -> candle_core::Result<()> {
        let mean: f32 = w
            .narrow(candle_core::D::Minus1, 1, 1)?
            .mean_all()?
            .to_scalar()?;
        let mut g = self.sum_count.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += f64::from(mean);
        g.1 += 1;
        Ok(())
    }
    fn reset(&self) {
        *self.sum_count.lock().unwrap_or_else(|p| p.into_inner()) = (0.0, 0);
    }
    fn mean(&self) -> f64 {
        let g = self.sum_count.lock().unwrap_or_else(|p| p.into_inner());
        if g.1 == 0 {
            f64::NAN
        } else {
            g.0 / g.1 as f64
        }
    }
}

/// The layer index of a module path (`...layer.3.attention...` -> 3).
fn layer_of(path: &str) -> Option<usize> {
    let rest = &path[path.find("layer.")? + "layer.".len()..];
    rest.split('.').next()?.parse().ok()
}

impl SoupTrial {
    /// Reads both adapters, writes their soup (optionally re-compressed to `rank`) to `out` and
    /// loads it into the pretrained model. Returns the model, the adapters and the mean
    /// re-compression error.
    fn soup(
        &self,
        rank: Option<usize>,
        out: &Path,
        ctx: &RunContext,
    ) -> Result<(AnyClassifier, Vec<Adapter>, f64)> {
        let adapters: Vec<Adapter> = self
            .dirs
            .iter()
            .map(|d| Adapter::read(d))
            .collect::<forge_merge::Result<_>>()?;
        let report = merge_adapters(&adapters, &[0.5, 0.5], rank, out)?;
        let err = if report.compression_error.is_empty() {
            0.0
        } else {
            report.compression_error.iter().map(|(_, e)| e).sum::<f64>()
                / report.compression_error.len() as f64
        };
        let mut model =
            shared::pretrained_with_head(&self.files, Task::Sst2.classes(), self.seed, ctx)?;
        forge_lora::load_adapter(&mut model, out)?;
        Ok((model, adapters, err))
    }

    /// LoRA-Flow: the soup's heads, the two adapters as a gated mixture in every adapted layer,
    /// the gate trained on the first `n_flow` training sentences. Returns the model and the
    /// gate.
    fn flow(&self, ctx: &RunContext) -> Result<(AnyClassifier, LoraFlowGate, Arc<GateLog>)> {
        let out = self.tmp.path().join("flow-heads");
        let (mut model, adapters, _) = self.soup(None, &out, ctx)?;
        // The gate reads the adapted layers' input, the hidden state (q/v: `in` = hidden).
        let hidden = match adapters[0].modules.values().next() {
            Some((a, _)) => a.dims2()?.1,
            None => {
                return Err(BenchError::config(
                    SST2_LORA_SOUP,
                    "the adapters have no module",
                ))
            }
        };
        let mut paths: Vec<(String, usize)> = Vec::new();
        for path in adapters[0].modules.keys() {
            let layer = layer_of(path).ok_or_else(|| {
                BenchError::config(SST2_LORA_SOUP, format!("no layer index in module {path}"))
            })?;
            paths.push((path.clone(), layer));
        }
        let layers = paths.iter().map(|(_, l)| l + 1).max().unwrap_or(0);
        let gate = LoraFlowGate::new(layers, adapters.len(), hidden, &ctx.device)?;
        let log = Arc::new(GateLog::default());
        let by_path: BTreeMap<String, usize> = paths.into_iter().collect();
        let mut set = 0usize;
        for (path, linear) in named_linears_mut(&mut model) {
            let Some(&layer) = by_path.get(&path) else {
                continue;
            };
            // The soup's adapter is replaced by the two adapters mixed by the gate.
            linear.remove_adapter()?;
            let mut parts = Vec::new();
            for ad in &adapters {
                let (a, b) = ad.modules.get(&path).ok_or_else(|| {
                    BenchError::config(
                        SST2_LORA_SOUP,
                        format!("adapter {} lacks module {path}", ad.label),
                    )
                })?;
                parts.push((
                    a.to_device(&ctx.device)?,
                    b.to_device(&ctx.device)?,
                    ad.config.scaling(),
                ));
            }
            let g = gate.clone();
            let log = log.clone();
            let f: MixtureGate = Arc::new(move |x: &candle_core::Tensor| {
                let w = g
                    .weights(layer, x)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                log.record(&w)?;
                Ok(w)
            });
            linear.set_mixture(Some(AdapterMixture::new(parts, f)?))?;
            set += 1;
        }
        if set != by_path.len() {
            return Err(BenchError::config(
                SST2_LORA_SOUP,
                format!(
                    "LoRA-Flow: {set} of the adapters' {} modules found in the model",
                    by_path.len()
                ),
            ));
        }
        freeze_all(&mut model);
        model.set_training(false);
        let idx: Vec<usize> = (0..self.n_flow).collect();
        let batches: Vec<Batch> = idx
            .chunks(self.sizes.batch_size)
            .map(|c| self.sst.train.batch(c, self.sizes.max_length, &ctx.device))
            .collect::<forge_models::Result<_>>()?;
        let cfg = GateTrainConfig {
            lr: FLOW_LR,
            epochs: flow_epochs(ctx.mode),
            weight_decay: 0.0,
        };
        let m: &AnyClassifier = &model;
        let model_err = |e: forge_models::ModelError| {
            forge_merge::MergeError::Candle(candle_core::Error::Msg(e.to_string()))
        };
        train_gate(&gate, &batches, &cfg, |_, b: &Batch| {
            let logits = m
                .forward(&b.input_ids, Some(&b.attention_mask))
                .map_err(model_err)?;
            forge_models::train::cross_entropy_loss(&logits, &b.labels).map_err(model_err)
        })?;
        log.reset();
        Ok((model, gate, log))
    }
}

impl Trial for SoupTrial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let strategy = Strategy::from_name(name)?;
        let config = shared::train_config(&self.sizes, LORA_LR, self.seed);
        let mut c = Config::new();
        c.insert("strategy".into(), name.into());
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("n_train".into(), self.sst.train.len().into());
        c.insert("n_eval".into(), self.sst.eval.len().into());
        let mut extra = BTreeMap::new();
        let single = match strategy {
            Strategy::R4 => Some((&self.r4, 4usize, &self.dirs[0])),
            Strategy::R8 => Some((&self.r8, 8usize, &self.dirs[1])),
            _ => None,
        };
        if let Some((m, rank, dir)) = single {
            c.insert("rank".into(), rank.into());
            c.insert("lr".into(), LORA_LR.into());
            c.insert("epochs".into(), self.sizes.epochs.into());
            extra.insert(
                metric::STORAGE_BYTES.to_string(),
                super::storage::dir_bytes(dir)? as f64,
            );
            let params = forge_lora::count_parameters(&mut m.model.try_clone_deep()?);
            return Ok(StrategyOutcome {
                quality: m.accuracy,
                extra_metrics: extra,
                trainable_params: params.trainable as u64,
                gradient_steps: m.steps,
                epochs: Some(self.sizes.epochs as u32),
                training: m.training.clone(),
                note: None,
                config: c,
            });
        }
        let mut flow_log = None;
        let (mut model, trainable, steps, training) = match strategy {
            Strategy::Soup | Strategy::SoupR4 => {
                let rank = (strategy == Strategy::SoupR4).then_some(4);
                let out = self.tmp.path().join(name);
                let ((model, _, err), training) =
                    ctx.measure_once(|| self.soup(rank, &out, ctx))?;
                extra.insert(
                    metric::STORAGE_BYTES.to_string(),
                    super::storage::dir_bytes(&out)? as f64,
                );
                if rank.is_some() {
                    extra.insert(metric::COMPRESSION_ERROR.to_string(), err);
                }
                c.insert("rank".into(), rank.unwrap_or(12).into());
                (model, 0u64, 0u64, training)
            }
            Strategy::Flow => {
                let ((model, gate, log), training) = ctx.measure_once(|| self.flow(ctx))?;
                let n = gate.vars().iter().map(|v| v.elem_count()).sum::<usize>();
                extra.insert(metric::STORAGE_BYTES.to_string(), (4 * n) as f64);
                flow_log = Some(log);
                extra.insert(metric::FLOW_SAMPLES.to_string(), self.n_flow as f64);
                c.insert("flow_lr".into(), FLOW_LR.into());
                let epochs = flow_epochs(ctx.mode);
                c.insert("flow_epochs".into(), epochs.into());
                let steps = (epochs * self.n_flow.div_ceil(self.sizes.batch_size)) as u64;
                (model, n as u64, steps, training)
            }
            Strategy::R4 | Strategy::R8 => unreachable!("handled above"),
        };
        let eval = evaluate(&mut model, &self.sst.eval, &config)?;
        if let Some(log) = flow_log {
            extra.insert(metric::FLOW_WEIGHT_R8.to_string(), log.mean());
        }
        Ok(StrategyOutcome {
            quality: eval.accuracy,
            extra_metrics: extra,
            trainable_params: trainable,
            gradient_steps: steps,
            epochs: None,
            training,
            note: None,
            config: c,
        })
    }

    /// Training the two adapters.
    fn source_cost(&self) -> Option<Measurement> {
        Some(shared::sum_measurements(&[
            &self.r4.training,
            &self.r8.training,
        ]))
    }
}
