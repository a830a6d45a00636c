//! `sst2-full-vs-lora`: the seed's headline deep-learning comparison. A pretrained encoder
//! (MiniLM, DistilBERT, BERT) gets a new 2-class head and is fine-tuned on GLUE SST-2 (Socher
//! et al. 2013) in full, or with a LoRA adapter (Hu et al. 2021) of rank 4 or 8 on query/value
//! with the pooler and classifier trained in full. Per seed and strategy it records dev
//! accuracy, trainable parameters, the bytes the result needs on disk (the adapter, or the whole
//! checkpoint, written for real), wall time, energy per component and CO2; the runner adds the
//! reductions against full fine-tuning and the mean ± std over seeds.

use super::shared::{self, Task};
use super::storage::stored_bytes;
use super::strategy::FineTune;
use super::{model_and_tokenizer, sst2_splits, TextSizes};
use crate::error::Result;
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{Config, ConvergenceCurve, MeasurePolicy, Measurement, Metric, Wording};
use forge_lora::{count_parameters, LoraInjector};
use forge_models::train::{evaluate, fine_tune, Hooks, TextDataset, TrainConfig};
use forge_models::{AnyClassifier, ModelFiles};
use std::collections::BTreeMap;

/// The scenario's name (`cargo xtask demo --scenario sst2-full-vs-lora`).
pub const SST2_FULL_VS_LORA: &str = "sst2-full-vs-lora";

/// SST-2 has two classes (negative, positive).
const SST2_CLASSES: usize = 2;

/// Keys of the strategy outcomes' `extra_metrics`.
pub mod metric {
    /// Macro-F1 on the evaluation sentences.
    pub const MACRO_F1: &str = "macro_f1";
    /// Mean cross-entropy on the evaluation sentences.
    pub const DEV_LOSS: &str = "dev_loss";
    /// Bytes written to store the result: the adapter (+ trained heads), or the checkpoint.
    pub const STORAGE_BYTES: &str = "storage_bytes";
    /// Those bytes as a percentage of a full fine-tuned checkpoint of the same model.
    pub const STORAGE_PCT_FULL: &str = "storage_pct_full";
    /// Trainable parameters as a percentage of the model's (those full fine-tuning trains).
    pub const PARAMS_PCT_FULL: &str = "params_pct_full";
}

/// Full fine-tuning vs LoRA r 4 / r 8 on SST-2 (see the module docs).
#[derive(Debug, Clone)]
pub struct Sst2FullVsLora {
    strategies: Vec<FineTune>,
}

impl Sst2FullVsLora {
    /// Full fine-tuning (baseline), LoRA r 4 (headline) and LoRA r 8.
    pub fn new() -> Self {
        Self {
            strategies: vec![
                FineTune::Full,
                FineTune::Lora { rank: 4 },
                FineTune::Lora { rank: 8 },
            ],
        }
    }
}

impl Default for Sst2FullVsLora {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario for Sst2FullVsLora {
    fn name(&self) -> &str {
        SST2_FULL_VS_LORA
    }
    fn description(&self) -> &str {
        "SST-2 sentiment: full fine-tuning vs LoRA r4/r8 on query/value"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        self.strategies.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "lora-r4"
    }
    /// Never in the default quick selection (that stays classical and under a minute).
    fn in_quick(&self) -> bool {
        false
    }
    /// A training lasts seconds to minutes: measured once, never repeated.
    fn measure_policy(&self) -> MeasurePolicy {
        MeasurePolicy::Once
    }
    fn requires(&self) -> Requirements {
        shared::MODEL_AND_TEXT
    }
    fn wording(&self) -> Wording {
        Wording {
            baseline: "full fine-tuning".into(),
            transfer: "LoRA r4 q/v".into(),
            curve_x: "training epochs".into(),
            protocol: "A pretrained encoder with a new 2-class head fine-tuned on SST-2 \
                       training sentences (600 per seed in standard mode, 200 for 1 epoch in \
                       quick/smoke mode, 2,000 in full mode; 3 epochs, AdamW with 6% warmup \
                       then linear decay) in full (lr 5e-5) or with LoRA (Hu et al. 2021; r 4 \
                       or 8, alpha 2r, on query/value, pooler and classifier trained; lr 5e-4); \
                       accuracy on the SST-2 dev set. Storage is the adapter or the whole \
                       checkpoint as written to disk."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        // Keeps activation buffers in the process between steps (~30% of a step otherwise).
        forge_models::perf::tune_allocator();
        let sizes = TextSizes::for_mode(ctx.mode);
        let (files, tok) = model_and_tokenizer(self.name(), ctx, sizes.max_length)?;
        let (train, eval) = sst2_splits(self.name(), ctx, &sizes, &tok, seed)?;
        let model_id = shared::model_id(ctx, &files);
        Ok(Box::new(Sst2Trial {
            strategies: self.strategies.clone(),
            seed,
            sizes,
            files,
            model_id,
            train,
            eval,
            full_bytes: None,
        }))
    }
}

/// One seed: the sampled training sentences and the evaluation set, shared by the strategies.
struct Sst2Trial {
    strategies: Vec<FineTune>,
    seed: u64,
    sizes: TextSizes,
    files: ModelFiles,
    model_id: String,
    train: TextDataset,
    eval: TextDataset,
    /// Bytes of a full fine-tuned checkpoint (set by `full-ft`, or written once on demand).
    full_bytes: Option<u64>,
}

impl Sst2Trial {
    fn train_config(&self, strategy: FineTune) -> TrainConfig {
        shared::train_config(&self.sizes, strategy.learning_rate(), self.seed)
    }

    /// The pretrained model with a new 2-class head initialised from the seed, as transformers
    /// does (the same head for every strategy of a seed; a head the checkpoint may have is
    /// discarded).
    fn load(&self, ctx: &RunContext) -> Result<AnyClassifier> {
        shared::pretrained_with_head(&self.files, SST2_CLASSES, self.seed, ctx)
    }

    /// Bytes of a full checkpoint of this model, written once per seed when full fine-tuning
    /// has not run (a checkpoint's size does not depend on the values of its weights).
    fn full_checkpoint_bytes(&mut self, ctx: &RunContext) -> Result<u64> {
        if let Some(b) = self.full_bytes {
            return Ok(b);
        }
        let b = stored_bytes(&mut self.load(ctx)?, None)?;
        self.full_bytes = Some(b);
        Ok(b)
    }

    fn record_config(&self, strategy: FineTune, lora: Option<&forge_lora::LoraConfig>) -> Config {
        let mut c = strategy.config(lora);
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("epochs".into(), self.sizes.epochs.into());
        c.insert("n_train".into(), self.train.len().into());
        c.insert("n_eval".into(), self.eval.len().into());
        c.insert("max_length".into(), self.sizes.max_length.into());
        c.insert("batch_size".into(), self.sizes.batch_size.into());
        c
    }
}

impl Trial for Sst2Trial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let strategy = FineTune::find(&self.strategies, SST2_FULL_VS_LORA, name)?;
        let config = self.train_config(strategy);
        // Measured: loading, injection and training, exactly once.
        let ((mut model, lora, history, snaps), training): (_, Measurement) =
            ctx.measure_once(|| {
                let mut model = self.load(ctx)?;
                let lora = strategy.lora_config(&model);
                if let Some(cfg) = &lora {
                    LoraInjector::new(cfg.clone())?
                        .with_seed(self.seed)
                        .inject(&mut model)?;
                }
                // parameter copies per epoch (cheap); their accuracies are evaluated below,
                // outside the measurement
                let snaps = shared::EpochSnapshots::new(&mut model);
                let mut hooks = Hooks::new().callback(snaps.callback());
                let history = fine_tune(&mut model, &self.train, None, &config, &mut hooks)?;
                drop(hooks);
                Ok((model, lora, history, snaps))
            })?;
        let eval = evaluate(&mut model, &self.eval, &config)?;
        let curve =
            // the last snapshot is the final model unless training stopped inside an epoch
            snaps.accuracy_curve_known(
                &mut model,
                &self.eval,
                &config,
                None,
                history.stopped.is_none().then_some(eval.accuracy),
            )?;
        // The models the EWC, merging and LoRA-soup scenarios build on: kept, not retrained.
        shared::remember(
            SST2_FULL_VS_LORA,
            ctx,
            Task::Sst2,
            &self.sizes,
            strategy,
            config.learning_rate,
            self.seed,
            &model,
            lora.as_ref(),
            &training,
            eval.accuracy,
            history.steps as u64,
            Some(curve),
        )?;
        let params = count_parameters(&mut model);
        let bytes = stored_bytes(&mut model, lora.as_ref())?;
        drop(model);
        if strategy == FineTune::Full {
            self.full_bytes = Some(bytes);
        }
        let full_bytes = self.full_checkpoint_bytes(ctx)?;
        let base_params = params.total.saturating_sub(params.adapter).max(1);
        let extra = BTreeMap::from([
            (metric::MACRO_F1.to_string(), eval.macro_f1),
            (metric::DEV_LOSS.to_string(), eval.loss),
            (metric::STORAGE_BYTES.to_string(), bytes as f64),
            (
                metric::STORAGE_PCT_FULL.to_string(),
                100.0 * bytes as f64 / full_bytes.max(1) as f64,
            ),
            (
                metric::PARAMS_PCT_FULL.to_string(),
                100.0 * params.trainable as f64 / base_params as f64,
            ),
        ]);
        Ok(StrategyOutcome {
            quality: eval.accuracy,
            extra_metrics: extra,
            trainable_params: params.trainable as u64,
            gradient_steps: history.steps as u64,
            epochs: Some(history.epochs.len() as u32),
            training,
            note: history.stopped.clone(),
            config: self.record_config(strategy, lora.as_ref()),
        })
    }

    /// The pretrained model is downloaded, not trained here: no source cost is charged.
    fn source_cost(&self) -> Option<Measurement> {
        None
    }

    /// SST-2 dev accuracy before training and after each epoch, for every strategy: from this
    /// run's trainings when they ran in this process, else trained again (unmeasured; the same
    /// model, as training is deterministic for the seed).
    fn convergence(&mut self, ctx: &RunContext) -> Result<Vec<ConvergenceCurve>> {
        let data = shared::TaskData {
            train: self.train.clone(),
            eval: self.eval.clone(),
        };
        self.strategies
            .iter()
            .map(|&strategy| {
                let quality = shared::accuracy_curve(
                    SST2_FULL_VS_LORA,
                    ctx,
                    Task::Sst2,
                    &self.sizes,
                    strategy,
                    strategy.learning_rate(),
                    self.seed,
                    &data,
                )?;
                Ok(ConvergenceCurve {
                    scenario: SST2_FULL_VS_LORA.into(),
                    strategy: strategy.name(),
                    seed: self.seed,
                    metric: Metric::Accuracy,
                    quality,
                })
            })
            .collect()
    }
}
