//! `sst2-merge`: reuse fine-tuned models with no training at all. Two encoders fully fine-tuned
//! on SST-2 with different learning rates (5e-5, the one of `sst2-full-vs-lora`, reused when it
//! ran in the same process, and 1e-4) are merged with forge-merge, relative to the pretrained
//! encoder with the same seeded head:
//!
//! - `linear`: the element-wise mean (model soups; Wortsman et al. 2022);
//! - `slerp`: spherical interpolation at t = 0.5, per tensor (Shoemake 1985, as mergekit);
//! - `task-arithmetic`: base + 0.6 (tau_a + tau_b) (Ilharco et al. 2023);
//! - `ties`: trim each task vector to its top 50%, elect signs, disjoint mean (Yadav et al. 2023);
//! - `dare-ties`: drop 50% of each task vector at random, rescale by 2, then TIES' sign
//!   election (Yu et al. 2024);
//! - `multitask-ties`: a backbone-only TIES merge of the SST-2 model and an encoder fine-tuned on
//!   AG News, whose heads differ in shape (2 vs 4 classes): the merged backbone is evaluated on
//!   SST-2 with the SST-2 head and on AG News with the AG News head (`agnews_acc`).
//!
//! The baseline is the fine-tuning that produced the first model; the merges' cost is the merge
//! itself (state dicts in memory, forge-merge's kernels, the merged weights loaded into a model),
//! measured. The trainings of the merged models are the source cost.

use super::shared::{self, FineTuned, Task, TaskData};
use super::{model_and_tokenizer, TextSizes};
use crate::error::{BenchError, Result};
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{Config, MeasurePolicy, Measurement, Metric, StrategyKind, Wording};
use candle_core::Tensor;
use forge_lora::DeepClone;
use forge_merge::{merge_state_dicts, task_vector, task_vector_similarity, MergeConfig, StateDict};
use forge_models::train::evaluate;
use forge_models::{ModelFiles, StateDict as _};
use std::collections::BTreeMap;

/// The scenario's name.
pub const SST2_MERGE: &str = "sst2-merge";

/// Learning rate of the first model (full fine-tuning's rate in `sst2-full-vs-lora`).
const LR_A: f64 = super::strategy::FULL_LR;
/// Learning rate of the second model.
const LR_B: f64 = 1e-4;
/// Learning rate of the AG News model.
const LR_AG: f64 = super::strategy::FULL_LR;

/// Keys of the strategy outcomes' `extra_metrics`.
pub mod metric {
    /// AG News test accuracy of the multi-task merge with the AG News head.
    pub const AGNEWS_ACC: &str = "agnews_acc";
    /// AG News test accuracy of the AG News model alone (the multi-task merge's reference).
    pub const AGNEWS_ALONE: &str = "agnews_alone";
    /// Cosine similarity of the two merged task vectors (over the tensors both have).
    pub const TASK_VECTOR_COSINE: &str = "task_vector_cosine";
    /// Tensors merged.
    pub const TENSORS_MERGED: &str = "tensors_merged";
    /// Tensors copied from one model (shapes differ, e.g. heads of different class counts).
    pub const TENSORS_TAKEN: &str = "tensors_taken";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    FineTuneA,
    FineTuneB,
    Linear,
    Slerp,
    TaskArithmetic,
    Ties,
    DareTies,
    MultitaskTies,
}

impl Strategy {
    const ALL: [Strategy; 8] = [
        Strategy::FineTuneA,
        Strategy::FineTuneB,
        Strategy::Linear,
        Strategy::Slerp,
        Strategy::TaskArithmetic,
        Strategy::Ties,
        Strategy::DareTies,
        Strategy::MultitaskTies,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::FineTuneA => "finetune",
            Strategy::FineTuneB => "finetune-lr1e-4",
            Strategy::Linear => "linear",
            Strategy::Slerp => "slerp",
            Strategy::TaskArithmetic => "task-arithmetic",
            Strategy::Ties => "ties",
            Strategy::DareTies => "dare-ties",
            Strategy::MultitaskTies => "multitask-ties",
        }
    }

    fn spec(self) -> StrategySpec {
        let (kind, uses_source, text) = match self {
            Strategy::FineTuneA => (
                StrategyKind::Baseline,
                false,
                "full fine-tuning on SST-2, lr 5e-5 (the first merged model)",
            ),
            Strategy::FineTuneB => (
                StrategyKind::Reference,
                false,
                "full fine-tuning on SST-2, lr 1e-4 (the second merged model)",
            ),
            Strategy::Linear => (StrategyKind::Transfer, true, "mean of the two models"),
            Strategy::Slerp => (StrategyKind::Transfer, true, "SLERP at t = 0.5"),
            Strategy::TaskArithmetic => (
                StrategyKind::Transfer,
                true,
                "pretrained + 0.6 x (sum of the task vectors)",
            ),
            Strategy::Ties => (
                StrategyKind::Transfer,
                true,
                "TIES: density 0.5, sign election, disjoint mean (Yadav et al. 2023)",
            ),
            Strategy::DareTies => (
                StrategyKind::Transfer,
                true,
                "DARE (drop 0.5, rescale 2) + TIES sign election (Yu et al. 2024)",
            ),
            Strategy::MultitaskTies => (
                StrategyKind::Transfer,
                true,
                "backbone-only TIES of the SST-2 and an AG News model, each task with its own head",
            ),
        };
        StrategySpec::new(self.name(), kind, uses_source, text)
    }

    fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: SST2_MERGE.into(),
                strategy: name.into(),
            })
    }

    /// The mergekit YAML of a merge strategy (`base` the pretrained encoder, `a` and `b` the
    /// SST-2 models, `ag` the AG News model).
    fn yaml(self, seed: u64) -> Option<String> {
        Some(match self {
            Strategy::FineTuneA | Strategy::FineTuneB => return None,
            Strategy::Linear => "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 0.5}\n  - model: b\n    parameters: {weight: 0.5}\n".into(),
            Strategy::Slerp => "merge_method: slerp\nbase_model: a\nmodels:\n  - model: a\n  - model: b\nparameters: {t: 0.5}\n".into(),
            Strategy::TaskArithmetic => "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: 0.6}\n  - model: b\n    parameters: {weight: 0.6}\n".into(),
            Strategy::Ties => "merge_method: ties\nbase_model: base\nmodels:\n  - model: a\n    parameters: {weight: 1.0, density: 0.5}\n  - model: b\n    parameters: {weight: 1.0, density: 0.5}\n".into(),
            Strategy::DareTies => format!("merge_method: dare_ties\nbase_model: base\nseed: {seed}\nmodels:\n  - model: a\n    parameters: {{weight: 1.0, density: 0.5}}\n  - model: b\n    parameters: {{weight: 1.0, density: 0.5}}\n"),
            Strategy::MultitaskTies => "merge_method: ties\nbase_model: base\nmismatch: {take_from: a}\nmodels:\n  - model: a\n    parameters: {weight: 1.0, density: 0.5}\n  - model: ag\n    parameters: {weight: 1.0, density: 0.5}\n".into(),
        })
    }
}

/// Five merge strategies and a backbone-only multi-task merge (module docs).
#[derive(Debug, Clone, Default)]
pub struct Sst2Merge;

impl Sst2Merge {
    /// The scenario.
    pub fn new() -> Self {
        Self
    }
}

impl Scenario for Sst2Merge {
    fn name(&self) -> &str {
        SST2_MERGE
    }
    fn description(&self) -> &str {
        "SST-2: two fine-tuned models merged five ways, and an SST-2 + AG News backbone merge"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        Strategy::ALL.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "ties"
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
            baseline: "full fine-tuning".into(),
            transfer: "TIES merge".into(),
            curve_x: "training epochs".into(),
            protocol: "Two encoders fully fine-tuned on the same SST-2 sentences (lr 5e-5 and \
                       1e-4, 3 epochs; their trainings are the source cost) merged with \
                       forge-merge relative to the pretrained encoder: linear (0.5/0.5), SLERP \
                       (t 0.5), task arithmetic (0.6 per task vector), TIES (density 0.5), \
                       DARE+TIES (drop 0.5, seeded). multitask-ties merges the SST-2 model with \
                       one fine-tuned on AG News (400 sentences) backbone-only, heads kept per \
                       task. A merge's cost is the merge plus loading the merged weights."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        forge_models::perf::tune_allocator();
        let sizes = TextSizes::for_mode(ctx.mode);
        let (files, tok) = model_and_tokenizer(self.name(), ctx, sizes.max_length)?;
        let sst = shared::task_data(self.name(), ctx, Task::Sst2, &sizes, &tok, seed)?;
        let ag = shared::task_data(self.name(), ctx, Task::AgNews, &sizes, &tok, seed)?;
        let a = shared::fine_tuned(self.name(), ctx, Task::Sst2, &sizes, LR_A, seed, &sst)?;
        let b = shared::fine_tuned(self.name(), ctx, Task::Sst2, &sizes, LR_B, seed, &sst)?;
        let agm = shared::fine_tuned(self.name(), ctx, Task::AgNews, &sizes, LR_AG, seed, &ag)?;
        let model_id = shared::model_id(ctx, &files);
        let mut base = shared::pretrained_with_head(&files, Task::Sst2.classes(), seed, ctx)?;
        let base_sd = base.state_dict()?;
        let mut a_model = a.model.try_clone_deep()?;
        let mut b_model = b.model.try_clone_deep()?;
        let (tv_a, _) = task_vector(&base_sd, &a_model.state_dict()?)?;
        let (tv_b, _) = task_vector(&base_sd, &b_model.state_dict()?)?;
        let cosine = task_vector_similarity(&tv_a, &tv_b)?.overall;
        Ok(Box::new(MergeTrial {
            seed,
            sizes,
            files,
            model_id,
            sst,
            ag,
            a,
            b,
            ag_model: agm,
            base_sd,
            cosine,
        }))
    }
}

struct MergeTrial {
    seed: u64,
    sizes: TextSizes,
    files: ModelFiles,
    model_id: String,
    sst: TaskData,
    ag: TaskData,
    a: FineTuned,
    b: FineTuned,
    ag_model: FineTuned,
    base_sd: Vec<(String, Tensor)>,
    cosine: f64,
}

impl MergeTrial {
    fn inputs(&self) -> Result<Vec<StateDict>> {
        Ok(vec![
            StateDict::new("base", self.base_sd.clone()),
            StateDict::new("a", self.a.model.try_clone_deep()?.state_dict()?),
            StateDict::new("b", self.b.model.try_clone_deep()?.state_dict()?),
            StateDict::new("ag", self.ag_model.model.try_clone_deep()?.state_dict()?),
        ])
    }
}

impl Trial for MergeTrial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let strategy = Strategy::from_name(name)?;
        let config = shared::train_config(&self.sizes, LR_A, self.seed);
        let mut c = Config::new();
        c.insert("strategy".into(), name.into());
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("epochs".into(), self.sizes.epochs.into());
        c.insert("n_train".into(), self.sst.train.len().into());
        c.insert("n_eval".into(), self.sst.eval.len().into());
        let mut extra = BTreeMap::new();
        let fine_tuned = match strategy {
            Strategy::FineTuneA => Some((&self.a, LR_A)),
            Strategy::FineTuneB => Some((&self.b, LR_B)),
            _ => None,
        };
        if let Some((m, lr)) = fine_tuned {
            c.insert("lr".into(), lr.into());
            let mut model = m.model.try_clone_deep()?;
            let params = forge_lora::count_parameters(&mut model);
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
        let yaml = strategy
            .yaml(self.seed)
            .expect("merge strategies have a YAML");
        let merge_cfg = MergeConfig::from_yaml(&yaml)?;
        c.insert(
            "merge_method".into(),
            merge_cfg.merge_method.to_string().into(),
        );
        let inputs = self.inputs()?;
        let files = &self.files;
        let seed = self.seed;
        // Measured: the merge and loading its result into a model.
        let ((mut model, merged, report), training) = ctx.measure_once(|| {
            let (tensors, report) = merge_state_dicts(&merge_cfg, &inputs, &ctx.device)?;
            let mut model = shared::pretrained_with_head(files, Task::Sst2.classes(), seed, ctx)?;
            model.load_state_dict(&tensors)?;
            Ok((model, tensors, report))
        })?;
        let sst = evaluate(&mut model, &self.sst.eval, &config)?;
        let (n_merged, _, n_taken, _) = report.counts();
        extra.insert(metric::TENSORS_MERGED.to_string(), n_merged as f64);
        extra.insert(metric::TENSORS_TAKEN.to_string(), n_taken as f64);
        if strategy == Strategy::MultitaskTies {
            // The merged backbone with the AG News model's own head.
            let mut ag_eval_model =
                shared::pretrained_with_head(files, Task::AgNews.classes(), seed, ctx)?;
            let ag_sd = self.ag_model.model.try_clone_deep()?.state_dict()?;
            let with_ag_head: Vec<(String, Tensor)> = merged
                .iter()
                .map(|(n, t)| {
                    if n.starts_with("classifier.") {
                        let own = ag_sd.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone());
                        (n.clone(), own.unwrap_or_else(|| t.clone()))
                    } else {
                        (n.clone(), t.clone())
                    }
                })
                .collect();
            ag_eval_model.load_state_dict(&with_ag_head)?;
            let ag = evaluate(&mut ag_eval_model, &self.ag.eval, &config)?;
            extra.insert(metric::AGNEWS_ACC.to_string(), ag.accuracy);
            extra.insert(metric::AGNEWS_ALONE.to_string(), self.ag_model.accuracy);
        } else {
            extra.insert(metric::TASK_VECTOR_COSINE.to_string(), self.cosine);
        }
        Ok(StrategyOutcome {
            quality: sst.accuracy,
            extra_metrics: extra,
            trainable_params: 0,
            gradient_steps: 0,
            epochs: None,
            training,
            note: None,
            config: c,
        })
    }

    /// Training the merged models: both SST-2 models and the AG News model.
    fn source_cost(&self) -> Option<Measurement> {
        Some(shared::sum_measurements(&[
            &self.a.training,
            &self.b.training,
            &self.ag_model.training,
        ]))
    }
}
