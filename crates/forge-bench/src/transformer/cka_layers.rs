//! `cka-layers`: how far fine-tuning moves an encoder's representations, layer by layer.
//! Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations
//! Revisited", ICML; the standard biased HSIC estimator, in [0, 1]) between the mean-pooled
//! hidden states of two models on the same SST-2 dev sentences, for every hidden state (0 = the
//! embeddings):
//!
//! - `pretrained-vs-sst2`: the pretrained encoder against the one fully fine-tuned on SST-2;
//! - `pretrained-vs-agnews`: against the one fully fine-tuned on AG News;
//! - `sst2-vs-agnews`: the two fine-tuned encoders against each other (between tasks).
//!
//! The fine-tuned models are those of `sst2-full-vs-lora` and `sst2-merge` when they ran in the
//! same process (their trainings are the source cost). The quality is the CKA of the last
//! hidden state; `cka_layer_<i>` has every layer and `cka_mean` their mean. A strategy's cost
//! is extracting both models' features and computing the CKAs.

use super::shared::{self, FineTuned, Task, TaskData};
use super::strategy::FULL_LR;
use super::{model_and_tokenizer, TextSizes};
use crate::error::{BenchError, Result};
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{Config, MeasurePolicy, Measurement, Metric, StrategyKind, Wording};
use forge_models::{AnyClassifier, LayerSelection, ModelFiles};
use forge_safety::cka::{CkaConfig, CkaEstimator, CkaReport};
use std::collections::BTreeMap;

/// The scenario's name.
pub const CKA_LAYERS: &str = "cka-layers";

/// Keys of the strategy outcomes' `extra_metrics`: `cka_layer_<i>` per hidden state, and:
pub mod metric {
    /// Mean CKA over the hidden states.
    pub const CKA_MEAN: &str = "cka_mean";
    /// Prefix of the per-hidden-state keys (`cka_layer_0` = the embeddings).
    pub const CKA_LAYER_PREFIX: &str = "cka_layer_";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pair {
    PretrainedSst2,
    PretrainedAgNews,
    Sst2AgNews,
}

impl Pair {
    const ALL: [Pair; 3] = [
        Pair::PretrainedSst2,
        Pair::PretrainedAgNews,
        Pair::Sst2AgNews,
    ];

    fn name(self) -> &'static str {
        match self {
            Pair::PretrainedSst2 => "pretrained-vs-sst2",
            Pair::PretrainedAgNews => "pretrained-vs-agnews",
            Pair::Sst2AgNews => "sst2-vs-agnews",
        }
    }

    fn spec(self) -> StrategySpec {
        let (kind, text) = match self {
            Pair::PretrainedSst2 => (
                StrategyKind::Baseline,
                "the pretrained encoder vs the one fully fine-tuned on SST-2",
            ),
            Pair::PretrainedAgNews => (
                StrategyKind::Reference,
                "the pretrained encoder vs the one fully fine-tuned on AG News",
            ),
            Pair::Sst2AgNews => (
                StrategyKind::Transfer,
                "the SST-2 and AG News fine-tuned encoders against each other (between tasks)",
            ),
        };
        StrategySpec::new(self.name(), kind, true, text)
    }
}

/// Per-layer CKA between pretrained and fine-tuned encoders and between tasks (module docs).
#[derive(Debug, Clone, Default)]
pub struct CkaLayers;

impl CkaLayers {
    /// The scenario.
    pub fn new() -> Self {
        Self
    }
}

impl Scenario for CkaLayers {
    fn name(&self) -> &str {
        CKA_LAYERS
    }
    fn description(&self) -> &str {
        "per-layer CKA: pretrained vs fine-tuned encoders, and between tasks"
    }
    fn metric(&self) -> Metric {
        Metric::Cka
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        Pair::ALL.iter().map(|p| p.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "sst2-vs-agnews"
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
            baseline: "pretrained vs SST-2 fine-tuned".into(),
            transfer: "SST-2 vs AG News fine-tuned".into(),
            curve_x: "hidden state".into(),
            protocol: "Linear CKA (Kornblith et al. 2019, biased HSIC) between two encoders' \
                       mean-pooled hidden states of the SST-2 dev sentences, per hidden state \
                       (0 = embeddings); quality = the last hidden state's CKA. The fine-tuned \
                       encoders are the full fine-tunings on SST-2 (600 sentences) and AG News \
                       (400), 3 epochs, lr 5e-5; their trainings are the source cost. Cost = \
                       both feature extractions and the CKAs."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        forge_models::perf::tune_allocator();
        let sizes = TextSizes::for_mode(ctx.mode);
        let (files, tok) = model_and_tokenizer(self.name(), ctx, sizes.max_length)?;
        let sst = shared::task_data(self.name(), ctx, Task::Sst2, &sizes, &tok, seed)?;
        let ag = shared::task_data(self.name(), ctx, Task::AgNews, &sizes, &tok, seed)?;
        let sst_model =
            shared::fine_tuned(self.name(), ctx, Task::Sst2, &sizes, FULL_LR, seed, &sst)?;
        let ag_model =
            shared::fine_tuned(self.name(), ctx, Task::AgNews, &sizes, FULL_LR, seed, &ag)?;
        let model_id = shared::model_id(ctx, &files);
        Ok(Box::new(CkaTrial {
            seed,
            sizes,
            files,
            model_id,
            sst,
            sst_model,
            ag_model,
        }))
    }
}

struct CkaTrial {
    seed: u64,
    sizes: TextSizes,
    files: ModelFiles,
    model_id: String,
    sst: TaskData,
    sst_model: FineTuned,
    ag_model: FineTuned,
}

impl CkaTrial {
    fn model(&self, which: &str, ctx: &RunContext) -> Result<AnyClassifier> {
        Ok(match which {
            "sst2" => forge_lora::DeepClone::try_clone_deep(&self.sst_model.model)?,
            "agnews" => forge_lora::DeepClone::try_clone_deep(&self.ag_model.model)?,
            _ => shared::pretrained_with_head(&self.files, Task::Sst2.classes(), self.seed, ctx)?,
        })
    }

    /// Per-hidden-state CKA between models `a` and `b`.
    fn per_layer(&self, a: &str, b: &str, ctx: &RunContext) -> Result<Vec<f64>> {
        let fa = shared::pooled_features(
            &self.model(a, ctx)?,
            &self.sst.eval,
            &LayerSelection::All,
            self.sizes.max_length,
            ctx,
        )?;
        let fb = shared::pooled_features(
            &self.model(b, ctx)?,
            &self.sst.eval,
            &LayerSelection::All,
            self.sizes.max_length,
            ctx,
        )?;
        let label = |r: &forge_models::representations::Representations| {
            r.layers
                .iter()
                .zip(&r.features)
                .map(|(l, t)| (format!("hidden {l}"), t.clone()))
                .collect::<Vec<_>>()
        };
        let mut values = Vec::new();
        let cfg = CkaConfig::linear(CkaEstimator::Biased);
        for (x, y) in label(&fa).into_iter().zip(label(&fb)) {
            let r = CkaReport::compute(&[x], &[y], &cfg)?;
            values.push(r.values[0][0]);
        }
        Ok(values)
    }
}

impl Trial for CkaTrial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let pair = Pair::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: CKA_LAYERS.into(),
                strategy: name.into(),
            })?;
        let (a, b) = match pair {
            Pair::PretrainedSst2 => ("pretrained", "sst2"),
            Pair::PretrainedAgNews => ("pretrained", "agnews"),
            Pair::Sst2AgNews => ("sst2", "agnews"),
        };
        let (values, training) = ctx.measure_once(|| self.per_layer(a, b, ctx))?;
        let last = *values
            .last()
            .ok_or_else(|| BenchError::config(CKA_LAYERS, "the encoder has no hidden state"))?;
        let mut extra = BTreeMap::new();
        for (i, v) in values.iter().enumerate() {
            extra.insert(format!("{}{i}", metric::CKA_LAYER_PREFIX), *v);
        }
        extra.insert(
            metric::CKA_MEAN.to_string(),
            values.iter().sum::<f64>() / values.len() as f64,
        );
        let mut c = Config::new();
        c.insert("strategy".into(), name.into());
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("n_eval".into(), self.sst.eval.len().into());
        c.insert("cka".into(), "linear, biased HSIC, mean pooling".into());
        Ok(StrategyOutcome {
            quality: last.clamp(0.0, 1.0),
            extra_metrics: extra,
            trainable_params: 0,
            gradient_steps: 0,
            epochs: None,
            training,
            note: None,
            config: c,
        })
    }

    /// Training the two fine-tuned encoders.
    fn source_cost(&self) -> Option<Measurement> {
        Some(shared::sum_measurements(&[
            &self.sst_model.training,
            &self.ag_model.training,
        ]))
    }
}
