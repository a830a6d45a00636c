//! `sst2-to-agnews`: cross-task transfer. The encoder fully fine-tuned on SST-2 (the full
//! fine-tuning of `sst2-full-vs-lora`, reused when it ran in the same process) gets a new 4-class
//! head and is trained on AG News (Zhang et al. 2015) four ways:
//!
//! - `all-at-once` (baseline): plain fine-tuning of every weight;
//! - `ewc`: Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic
//!   forgetting in neural networks", PNAS): the penalty `(lambda/2) sum_i F_i (theta_i -
//!   theta*_i)^2` with the SST-2 true Fisher, anchored at the SST-2 solution, over every
//!   parameter except the head;
//! - `online-ewc` (Schwarz et al. 2018, "Progress & Compress", ICML): each AG News epoch ends a
//!   task; after it the AG News Fisher is folded in (`F <- gamma F + F_new`) and the anchor
//!   moves;
//! - `progressive` (Howard & Ruder 2018, ULMFiT, sections 3.2-3.3): gradual unfreezing from the
//!   top and discriminative learning rates (`lr / 2.6^d` for the group `d` below the top), no
//!   penalty.
//!
//! Per strategy: AG News test accuracy (the quality), SST-2 dev accuracy with the SST-2 head
//! re-attached (retention), and the backbone's drift from the SST-2 solution. The SST-2 training
//! is the source cost; the SST-2 Fisher (true Fisher, exact over the two classes, on the first
//! training sentences) is measured once per seed and charged to each EWC strategy, since each
//! would need it alone. Lambda = 1e5 and gamma = 0.9 were chosen on validation splits (held-out
//! SST-2 and AG News training sentences) in docs/ewc-cross-task.md.

use super::shared::{self, FineTuned, Task, TaskData};
use super::{model_and_tokenizer, TextSizes};
use crate::error::{BenchError, Result};
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{
    Config, ConvergenceCurve, MeasurePolicy, Measurement, Metric, StrategyKind, Wording,
};
use crate::Mode;
use candle_core::{Tensor, Var};
use forge_ewc::{fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherDiagonal, FisherEstimator};
use forge_ewc::{ParamFilter, Targets};
use forge_lora::{count_parameters, named_trainable, DeepClone};
use forge_models::train::{evaluate, fine_tune, fine_tune_with, Hooks, TextDataset};
use forge_models::transfer::HF_INIT_STD;
use forge_models::transfer::{layer_groups, replace_head, set_head, TransferScheduler};
use forge_models::{AnyClassifier, SequenceClassifier};
use std::collections::BTreeMap;

/// The scenario's name.
pub const SST2_TO_AGNEWS: &str = "sst2-to-agnews";

/// EWC strength (chosen on validation splits in docs/ewc-cross-task.md: 1e3, 1e4, 1e5 tried).
pub const EWC_LAMBDA: f64 = 1e5;

/// Online EWC's decay of the old Fisher.
pub const ONLINE_GAMMA: f64 = 0.9;

/// Learning rate of both phases (full fine-tuning's rate).
const LR: f64 = super::strategy::FULL_LR;

/// Keys of the strategy outcomes' `extra_metrics`.
pub mod metric {
    /// SST-2 dev accuracy with the SST-2 head re-attached after AG News training.
    pub const SST2_RETENTION: &str = "sst2_retention";
    /// SST-2 dev accuracy of the SST-2 model before AG News training.
    pub const SST2_BEFORE: &str = "sst2_before";
    /// `||theta - theta_SST2||` over the backbone.
    pub const DRIFT_L2: &str = "drift_l2";
    /// That drift relative to `||theta_SST2||`.
    pub const DRIFT_REL: &str = "drift_rel";
    /// Macro-F1 on the AG News test sentences.
    pub const MACRO_F1: &str = "macro_f1";
}

/// How the SST-2 model is trained on AG News.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continual {
    /// Plain fine-tuning of every weight (the baseline).
    AllAtOnce,
    /// EWC with the SST-2 Fisher.
    Ewc,
    /// Online EWC, each AG News epoch a task boundary.
    OnlineEwc,
    /// ULMFiT's gradual unfreezing and discriminative learning rates.
    Progressive,
}

impl Continual {
    const ALL: [Continual; 4] = [
        Continual::AllAtOnce,
        Continual::Ewc,
        Continual::OnlineEwc,
        Continual::Progressive,
    ];

    fn name(self) -> &'static str {
        match self {
            Continual::AllAtOnce => "all-at-once",
            Continual::Ewc => "ewc",
            Continual::OnlineEwc => "online-ewc",
            Continual::Progressive => "progressive",
        }
    }

    fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: SST2_TO_AGNEWS.into(),
                strategy: name.into(),
            })
    }

    fn spec(self) -> StrategySpec {
        let (kind, text) = match self {
            Continual::AllAtOnce => (
                StrategyKind::Baseline,
                "every weight of the SST-2 model and a new 4-class head trained on AG News",
            ),
            Continual::Ewc => (
                StrategyKind::Transfer,
                "the same with the EWC penalty (lambda 1e5, SST-2 true Fisher; Kirkpatrick et al. 2017)",
            ),
            Continual::OnlineEwc => (
                StrategyKind::Transfer,
                "online EWC (gamma 0.9, each AG News epoch a task; Schwarz et al. 2018)",
            ),
            Continual::Progressive => (
                StrategyKind::Transfer,
                "gradual unfreezing from the top, lr / 2.6^depth (ULMFiT, Howard & Ruder 2018)",
            ),
        };
        StrategySpec::new(self.name(), kind, true, text)
    }
}

/// SST-2 -> AG News with and without EWC, online EWC and progressive unfreezing (module docs).
#[derive(Debug, Clone, Default)]
pub struct Sst2ToAgNews;

impl Sst2ToAgNews {
    /// The scenario.
    pub fn new() -> Self {
        Self
    }
}

/// Samples of the SST-2 Fisher (and of each online-EWC AG News Fisher).
fn fisher_samples(mode: Mode) -> usize {
    match mode {
        Mode::Quick => 32,
        Mode::Standard | Mode::Full => 200,
    }
}

impl Scenario for Sst2ToAgNews {
    fn name(&self) -> &str {
        SST2_TO_AGNEWS
    }
    fn description(&self) -> &str {
        "SST-2 -> AG News: all at once vs EWC, online EWC and progressive unfreezing"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        Continual::ALL.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "ewc"
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
            baseline: "all-at-once fine-tuning".into(),
            transfer: "EWC".into(),
            curve_x: "training epochs".into(),
            protocol: "The encoder fully fine-tuned on SST-2 (as in sst2-full-vs-lora; its \
                       training is the source cost) gets a new 4-class head and is trained on \
                       AG News training sentences (400 per seed in standard mode, 200 for 1 \
                       epoch in quick mode; 3 epochs, lr 5e-5) all at once, with EWC (lambda \
                       1e5, true Fisher of SST-2 on 200 sentences, head excluded), online EWC \
                       (gamma 0.9) or ULMFiT's progressive unfreezing with discriminative \
                       learning rates. Quality: AG News test accuracy; sst2_retention: SST-2 \
                       dev accuracy with the SST-2 head put back."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        forge_models::perf::tune_allocator();
        let sizes = TextSizes::for_mode(ctx.mode);
        let (files, tok) = model_and_tokenizer(self.name(), ctx, sizes.max_length)?;
        let sst = shared::task_data(self.name(), ctx, Task::Sst2, &sizes, &tok, seed)?;
        let ag = shared::task_data(self.name(), ctx, Task::AgNews, &sizes, &tok, seed)?;
        let source = shared::fine_tuned(self.name(), ctx, Task::Sst2, &sizes, LR, seed, &sst)?;
        let n_fisher = fisher_samples(ctx.mode).min(sst.train.len());
        let mut model = source.model.try_clone_deep()?;
        let (fisher, fisher_cost) =
            ctx.measure_once(|| fisher_of(&mut model, &sst.train, n_fisher, &sizes))?;
        let model_id = shared::model_id(ctx, &files);
        Ok(Box::new(AgTrial {
            seed,
            sizes,
            model_id,
            sst,
            ag,
            source,
            fisher,
            fisher_cost,
            n_fisher,
            start_accuracy: None,
            curves: BTreeMap::new(),
        }))
    }
}

/// The true Fisher (exact over the classes) of `model`'s current head on the first `n`
/// sentences of `data`.
fn fisher_of(
    model: &mut AnyClassifier,
    data: &TextDataset,
    n: usize,
    sizes: &TextSizes,
) -> Result<FisherDiagonal> {
    let params = named_trainable(model);
    model.set_training(false);
    let labels: Vec<usize> = data.labels().iter().map(|&l| l as usize).collect();
    let mut config = FisherConfig::new(FisherEstimator::TrueExact);
    config.max_samples = Some(n);
    let m: &AnyClassifier = model;
    let device = candle_core::Device::Cpu;
    let f = fisher_diagonal(
        &params,
        Targets::Labels(&labels),
        |idx: &[usize]| -> forge_models::Result<Tensor> {
            let b = data.batch(idx, sizes.max_length, &device)?;
            m.forward(&b.input_ids, Some(&b.attention_mask))
        },
        &config,
    )?;
    Ok(f)
}

fn is_head(name: &str) -> bool {
    name.starts_with("classifier.")
}

struct AgTrial {
    seed: u64,
    sizes: TextSizes,
    model_id: String,
    sst: TaskData,
    ag: TaskData,
    source: FineTuned,
    fisher: FisherDiagonal,
    fisher_cost: Measurement,
    n_fisher: usize,
    /// AG News accuracy before AG News training (the same model for every strategy).
    start_accuracy: Option<f64>,
    /// AG News accuracy before training and after each epoch, per strategy with a curve.
    curves: BTreeMap<&'static str, Vec<f64>>,
}

/// What [`AgTrial::train`] hands back: the model, the SST-2 head it replaced, the anchored EWC
/// object (for the drift), the optimizer steps, whether training stopped early, and parameter
/// snapshots per epoch for strategies with a convergence curve.
type Trained = (
    AnyClassifier,
    forge_lora::LoraLinear,
    Ewc,
    u64,
    bool,
    Option<shared::EpochSnapshots>,
);

impl Continual {
    /// Whether the scenario records its convergence curve (the baseline, and progressive
    /// unfreezing: the convergence figure compares them, as full fine-tuning and LoRA on SST-2).
    fn has_curve(self) -> bool {
        matches!(self, Continual::AllAtOnce | Continual::Progressive)
    }
}

impl AgTrial {
    /// Trains a copy of the SST-2 model on AG News with `method` (see [`Trained`]).
    fn train(&self, method: Continual) -> Result<Trained> {
        let mut model = self.source.model.try_clone_deep()?;
        model.set_training(true);
        let sst_head = replace_head(&mut model, Task::AgNews.classes(), HF_INIT_STD, self.seed)?;
        let params: Vec<(String, Var)> = named_trainable(&mut model);
        let filter = ParamFilter::new()
            .skip_shape_mismatch(true)
            .exclude_if(is_head);
        let lambda = match method {
            Continual::Ewc | Continual::OnlineEwc => EWC_LAMBDA,
            Continual::AllAtOnce | Continual::Progressive => 0.0,
        };
        let (mut ewc, _) = Ewc::new_filtered(
            &params,
            &self.fisher,
            EwcConfig::new(lambda).with_gamma(ONLINE_GAMMA),
            &filter,
        )?;
        let drift_ref = ewc.clone();
        let config = shared::train_config(&self.sizes, LR, self.seed);
        let mut steps = 0u64;
        let mut stopped = false;
        // parameter copies per epoch (cheap); evaluated after the measured training
        let snaps = method
            .has_curve()
            .then(|| shared::EpochSnapshots::new(&mut model));
        let curve_hooks = || {
            let mut h = Hooks::new();
            if let Some(sn) = &snaps {
                h.push_callback(sn.callback());
            }
            h
        };
        match method {
            Continual::AllAtOnce => {
                let h = fine_tune(
                    &mut model,
                    &self.ag.train,
                    None,
                    &config,
                    &mut curve_hooks(),
                )?;
                steps += h.steps as u64;
                stopped |= h.stopped.is_some();
            }
            Continual::Ewc => {
                let e = &ewc;
                let mut hooks = Hooks::new()
                    .penalty(move || -> candle_core::Result<Tensor> { Ok(e.penalty()?) });
                steps +=
                    fine_tune(&mut model, &self.ag.train, None, &config, &mut hooks)?.steps as u64;
            }
            Continual::OnlineEwc => {
                let epochs = self.sizes.epochs;
                for epoch in 0..epochs {
                    {
                        let e = &ewc;
                        let mut hooks = Hooks::new()
                            .penalty(move || -> candle_core::Result<Tensor> { Ok(e.penalty()?) });
                        let mut c = config.clone();
                        c.epochs = 1;
                        c.seed = self.seed + epoch as u64;
                        steps += fine_tune(&mut model, &self.ag.train, None, &c, &mut hooks)?.steps
                            as u64;
                    }
                    if epoch + 1 < epochs {
                        let f_ag =
                            fisher_of(&mut model, &self.ag.train, self.n_fisher, &self.sizes)?;
                        model.set_training(true);
                        ewc.update_online(&f_ag)?;
                    }
                }
            }
            Continual::Progressive => {
                let n_groups = layer_groups(&mut model).len();
                let mut plan = TransferScheduler::ulmfit(LR, config.weight_decay);
                // Spread the unfreezing so that every group trains in the last epoch.
                let epochs = self.sizes.epochs;
                plan.groups_per_epoch = if epochs > 1 {
                    (n_groups.saturating_sub(1)).div_ceil(epochs - 1).max(1)
                } else {
                    n_groups
                };
                let h = fine_tune_with(
                    &mut model,
                    &self.ag.train,
                    None,
                    &config,
                    &mut curve_hooks(),
                    &mut plan,
                )?;
                steps += h.steps as u64;
                stopped |= h.stopped.is_some();
            }
        }
        Ok((model, sst_head, drift_ref, steps, stopped, snaps))
    }
}

impl Trial for AgTrial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let method = Continual::from_name(name)?;
        let ((mut model, sst_head, drift_ref, steps, stopped, snaps), mut training) =
            ctx.measure_once(|| self.train(method))?;
        if matches!(method, Continual::Ewc | Continual::OnlineEwc) {
            training = shared::sum_measurements(&[&training, &self.fisher_cost]);
        }
        let config = shared::train_config(&self.sizes, LR, self.seed);
        let params = count_parameters(&mut model);
        let ag = evaluate(&mut model, &self.ag.eval, &config)?;
        if let Some(sn) = &snaps {
            // the first point is the same model for every strategy, the last the one just
            // evaluated (unless training stopped inside an epoch)
            let curve = sn.accuracy_curve_known(
                &mut model,
                &self.ag.eval,
                &config,
                self.start_accuracy,
                (!stopped).then_some(ag.accuracy),
            )?;
            self.start_accuracy = self.start_accuracy.or(curve.first().copied());
            self.curves.insert(method.name(), curve);
        }
        if method == Continual::AllAtOnce {
            // dl-gate's `from-sst2` is this same training
            shared::remember_derived(
                SST2_TO_AGNEWS,
                ctx,
                Task::AgNews,
                shared::SST2_THEN_AGNEWS,
                &self.sizes,
                LR,
                self.seed,
                &model,
                &training,
                ag.accuracy,
                steps,
            )?;
        }
        let drift = drift_ref.anchor_distance()?;
        let _ag_head = set_head(&mut model, sst_head)?;
        let sst = evaluate(&mut model, &self.sst.eval, &config)?;
        let extra = BTreeMap::from([
            (metric::SST2_RETENTION.to_string(), sst.accuracy),
            (metric::SST2_BEFORE.to_string(), self.source.accuracy),
            (metric::DRIFT_L2.to_string(), drift.l2),
            (metric::DRIFT_REL.to_string(), drift.relative),
            (metric::MACRO_F1.to_string(), ag.macro_f1),
        ]);
        let mut c = Config::new();
        c.insert("strategy".into(), name.into());
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("lr".into(), LR.into());
        c.insert("epochs".into(), self.sizes.epochs.into());
        c.insert("n_train".into(), self.ag.train.len().into());
        c.insert("n_eval".into(), self.ag.eval.len().into());
        c.insert("n_train_source".into(), self.sst.train.len().into());
        if matches!(method, Continual::Ewc | Continual::OnlineEwc) {
            c.insert("ewc_lambda".into(), EWC_LAMBDA.into());
            c.insert("fisher".into(), "true-exact".into());
            c.insert("fisher_samples".into(), self.n_fisher.into());
        }
        if method == Continual::OnlineEwc {
            c.insert("gamma".into(), ONLINE_GAMMA.into());
        }
        Ok(StrategyOutcome {
            quality: ag.accuracy,
            extra_metrics: extra,
            trainable_params: params.total as u64,
            gradient_steps: steps,
            epochs: Some(self.sizes.epochs as u32),
            training,
            note: None,
            config: c,
        })
    }

    /// Training the SST-2 model (once per seed, shared with `sst2-full-vs-lora`).
    fn source_cost(&self) -> Option<Measurement> {
        Some(self.source.training.clone())
    }

    /// AG News accuracy before training and after each epoch of all-at-once fine-tuning and of
    /// progressive unfreezing, from the runs of this process (a sharded sweep records the curves
    /// of the strategies its baseline's process ran).
    fn convergence(&mut self, _ctx: &RunContext) -> Result<Vec<ConvergenceCurve>> {
        Ok(self
            .curves
            .iter()
            .map(|(name, quality)| ConvergenceCurve {
                scenario: SST2_TO_AGNEWS.into(),
                strategy: (*name).into(),
                seed: self.seed,
                metric: Metric::Accuracy,
                quality: quality.clone(),
            })
            .collect())
    }
}
