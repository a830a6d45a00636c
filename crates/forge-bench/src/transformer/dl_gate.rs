//! `dl-gate`: the safety gate for encoders, before any fine-tuning energy is spent. Three
//! candidate sources for AG News are ranked on the labelled AG News training sentences with
//! forge-safety's encoder gate ([`forge_safety::rank_sources`]: LogME (You et al. 2021) against
//! a shuffled-label permutation null, dominated candidates blocked):
//!
//! - `pretrained`: the pretrained encoder;
//! - `sst2`: the encoder fully fine-tuned on SST-2 (from `sst2-full-vs-lora` in the same process);
//! - `random-init`: a randomly initialised encoder of the same architecture (a bad source).
//!
//! Then each is fine-tuned on AG News anyway, to show what the gate's verdicts are worth: the
//! baseline `from-random-init` is what training the refused source would have cost and scored.
//! Every record carries its candidate's gate rank and verdict; the gate's own cost (feature
//! extraction of the three candidates and the ranking) is in `gate_co2_kg` / `gate_seconds`,
//! and the gate record judges the random-init encoder.

use super::shared::{self, FineTuned, Task, TaskData};
use super::strategy::FULL_LR;
use super::{model_and_tokenizer, TextSizes};
use crate::classical::verdict_name;
use crate::error::{BenchError, Result};
use crate::scenario::{Requirements, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{
    Config, GateRecord, GateStatistic, MeasurePolicy, Measurement, Metric, StrategyKind, Wording,
};
use forge_lora::{count_parameters, DeepClone};
use forge_models::train::{evaluate, fine_tune, Hooks};
use forge_models::transfer::{replace_head, HF_INIT_STD};
use forge_models::{AnyClassifier, LayerSelection};
use forge_safety::{rank_sources, EncoderGateConfig, SourceCandidate, SourceRanking, Verdict};
use std::collections::BTreeMap;

/// The scenario's name.
pub const DL_GATE: &str = "dl-gate";

/// Keys of the strategy outcomes' `extra_metrics`.
pub mod metric {
    /// The candidate's rank in the gate (1 = recommended).
    pub const GATE_RANK: &str = "gate_rank";
    /// The gate's verdict on the candidate: 2 transfer, 1 with caution, 0 block.
    pub const GATE_VERDICT: &str = "gate_verdict";
    /// LogME gain over its shuffled-label null, as a fraction of the best candidate's.
    pub const LOGME_GAIN_FRACTION: &str = "logme_gain_fraction";
    /// CO2 of the gate (features of every candidate and the ranking), kg.
    pub const GATE_CO2_KG: &str = "gate_co2_kg";
    /// Wall time of the gate, s.
    pub const GATE_SECONDS: &str = "gate_seconds";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Pretrained,
    Sst2,
    RandomInit,
}

impl Source {
    const ALL: [Source; 3] = [Source::RandomInit, Source::Pretrained, Source::Sst2];

    fn candidate(self) -> &'static str {
        match self {
            Source::Pretrained => "pretrained",
            Source::Sst2 => "sst2",
            Source::RandomInit => "random-init",
        }
    }

    fn name(self) -> String {
        format!("from-{}", self.candidate())
    }

    fn spec(self) -> StrategySpec {
        let (kind, text) = match self {
            Source::RandomInit => (
                StrategyKind::Baseline,
                "fine-tuning the random-init encoder on AG News anyway (what a refused source costs)",
            ),
            Source::Pretrained => (
                StrategyKind::Transfer,
                "fine-tuning the pretrained encoder on AG News",
            ),
            Source::Sst2 => (
                StrategyKind::Transfer,
                "fine-tuning the SST-2 fine-tuned encoder on AG News",
            ),
        };
        StrategySpec::new(&self.name(), kind, true, text)
    }
}

/// Candidate sources ranked before training; the refused one trained anyway (module docs).
#[derive(Debug, Clone, Default)]
pub struct DlGate;

impl DlGate {
    /// The scenario.
    pub fn new() -> Self {
        Self
    }
}

impl Scenario for DlGate {
    fn name(&self) -> &str {
        DL_GATE
    }
    fn description(&self) -> &str {
        "encoder gate for AG News: pretrained, SST-2 fine-tuned and random-init sources ranked, then trained"
    }
    fn metric(&self) -> Metric {
        Metric::Accuracy
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        Source::ALL.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        "from-pretrained"
    }
    fn in_quick(&self) -> bool {
        false
    }
    fn measure_policy(&self) -> MeasurePolicy {
        MeasurePolicy::Once
    }
    /// The gate record is judged against the outcomes of every candidate's training, and the
    /// ranking (three feature extractions) is the trial's set-up: never split across shards.
    fn whole_trials(&self) -> bool {
        true
    }
    fn requires(&self) -> Requirements {
        shared::MODEL_AND_TEXT
    }
    fn wording(&self) -> Wording {
        Wording {
            baseline: "the refused random-init source, trained anyway".into(),
            transfer: "the pretrained source".into(),
            curve_x: "training epochs".into(),
            protocol: "Before training, forge-safety's encoder gate ranks three candidate \
                       sources for AG News on the labelled AG News training sentences (LogME of \
                       the last hidden state, mean-pooled, against 199 shuffled-label \
                       permutations; a candidate below half the best one's gain is blocked): \
                       the pretrained encoder, the SST-2 fine-tuned one and a random-init \
                       encoder. Each is then fine-tuned on AG News (3 epochs, lr 5e-5) to show \
                       what the verdicts are worth; the gate's own cost is gate_co2_kg."
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
        let random = AnyClassifier::from_config(&files.model_config()?, seed, &ctx.device)?;
        let pretrained = shared::pretrained_with_head(&files, Task::Sst2.classes(), seed, ctx)?;
        // The gate, measured: every candidate's features of the target sample and the ranking.
        let (ranking, gate_cost) = ctx.measure_once(|| {
            let mut candidates = Vec::new();
            for (name, model) in [
                (Source::Pretrained.candidate(), &pretrained),
                (Source::Sst2.candidate(), &sst_model.model),
                (Source::RandomInit.candidate(), &random),
            ] {
                let f = shared::pooled_features(
                    model,
                    &ag.train,
                    &LayerSelection::Last,
                    sizes.max_length,
                    ctx,
                )?;
                let last = f
                    .features
                    .last()
                    .cloned()
                    .ok_or_else(|| BenchError::config(DL_GATE, "no hidden state extracted"))?;
                candidates.push(SourceCandidate::new(name, last));
            }
            Ok(rank_sources(
                &candidates,
                ag.train.labels(),
                None,
                &EncoderGateConfig::default().with_seed(seed),
            )?)
        })?;
        let model_id = shared::model_id(ctx, &files);
        Ok(Box::new(GateTrial {
            seed,
            sizes,
            model_id,
            ag,
            sst_model,
            random,
            ranking,
            gate_cost,
            outcomes: BTreeMap::new(),
        }))
    }
}

struct GateTrial {
    seed: u64,
    sizes: TextSizes,
    model_id: String,
    ag: TaskData,
    sst_model: FineTuned,
    random: AnyClassifier,
    ranking: SourceRanking,
    gate_cost: Measurement,
    /// AG News accuracy per candidate, once trained.
    outcomes: BTreeMap<&'static str, f64>,
}

fn verdict_code(v: Verdict) -> f64 {
    match v {
        Verdict::Transfer => 2.0,
        Verdict::TransferWithCaution => 1.0,
        Verdict::Block => 0.0,
    }
}

impl GateTrial {
    /// The candidate fine-tuned on AG News: `(model, training, steps)`.
    fn train(&self, source: Source, ctx: &RunContext) -> Result<(AnyClassifier, Measurement, u64)> {
        if source == Source::Pretrained {
            // The AG News model of sst2-merge / cka-layers when it ran in this process.
            let ft = shared::fine_tuned(
                DL_GATE,
                ctx,
                Task::AgNews,
                &self.sizes,
                FULL_LR,
                self.seed,
                &self.ag,
            )?;
            return Ok((ft.model, ft.training, ft.steps));
        }
        if source == Source::Sst2 {
            // sst2-to-agnews's `all-at-once` when it ran in this process: the same training
            if let Some(ft) = shared::derived(
                DL_GATE,
                ctx,
                Task::AgNews,
                shared::SST2_THEN_AGNEWS,
                &self.sizes,
                FULL_LR,
                self.seed,
            )? {
                return Ok((ft.model, ft.training, ft.steps));
            }
        }
        let config = shared::train_config(&self.sizes, FULL_LR, self.seed);
        let ((model, steps), training) = ctx.measure_once(|| {
            let mut model = match source {
                Source::Sst2 => self.sst_model.model.try_clone_deep()?,
                _ => self.random.try_clone_deep()?,
            };
            forge_models::SequenceClassifier::set_training(&mut model, true);
            replace_head(&mut model, Task::AgNews.classes(), HF_INIT_STD, self.seed)?;
            let h = fine_tune(&mut model, &self.ag.train, None, &config, &mut Hooks::new())?;
            Ok((model, h.steps as u64))
        })?;
        Ok((model, training, steps))
    }
}

impl Trial for GateTrial {
    fn run(&mut self, name: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let source = Source::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| BenchError::UnknownStrategy {
                scenario: DL_GATE.into(),
                strategy: name.into(),
            })?;
        let (mut model, training, steps) = self.train(source, ctx)?;
        let config = shared::train_config(&self.sizes, FULL_LR, self.seed);
        let eval = evaluate(&mut model, &self.ag.eval, &config)?;
        self.outcomes.insert(source.candidate(), eval.accuracy);
        let a = self.ranking.get(source.candidate()).ok_or_else(|| {
            BenchError::config(
                DL_GATE,
                format!("no gate assessment of {}", source.candidate()),
            )
        })?;
        let best_gain = self
            .ranking
            .ranking
            .iter()
            .map(|x| x.logme_test.gain)
            .fold(f64::MIN, f64::max);
        let mut extra = BTreeMap::from([
            (metric::GATE_RANK.to_string(), a.rank as f64),
            (metric::GATE_VERDICT.to_string(), verdict_code(a.verdict)),
            (metric::GATE_CO2_KG.to_string(), self.gate_cost.co2_kg),
            (metric::GATE_SECONDS.to_string(), self.gate_cost.wall_time_s),
            ("macro_f1".to_string(), eval.macro_f1),
        ]);
        if best_gain > 0.0 {
            extra.insert(
                metric::LOGME_GAIN_FRACTION.to_string(),
                a.logme_test.gain / best_gain,
            );
        }
        let params = count_parameters(&mut model);
        let mut c = Config::new();
        c.insert("strategy".into(), name.into());
        c.insert("model".into(), self.model_id.clone().into());
        c.insert("source".into(), source.candidate().into());
        c.insert("gate_verdict".into(), verdict_name(a.verdict).into());
        c.insert("lr".into(), FULL_LR.into());
        c.insert("epochs".into(), self.sizes.epochs.into());
        c.insert("n_train".into(), self.ag.train.len().into());
        c.insert("n_eval".into(), self.ag.eval.len().into());
        Ok(StrategyOutcome {
            quality: eval.accuracy,
            extra_metrics: extra,
            trainable_params: params.trainable as u64,
            gradient_steps: steps,
            epochs: Some(self.sizes.epochs as u32),
            training,
            note: None,
            config: c,
        })
    }

    /// Training the SST-2 source (the pretrained and random-init ones cost nothing here).
    fn source_cost(&self) -> Option<Measurement> {
        Some(self.sst_model.training.clone())
    }

    /// The gate's verdict on the random-init encoder; it hurt if training it anyway scored
    /// more than 0.01 below the recommended source.
    fn gate(&mut self, _ctx: &RunContext) -> Result<Option<GateRecord>> {
        let bad = Source::RandomInit.candidate();
        let a = self
            .ranking
            .get(bad)
            .ok_or_else(|| BenchError::config(DL_GATE, "no gate assessment of random-init"))?;
        let hurt = match (
            self.outcomes.get(bad),
            self.ranking
                .recommended()
                .and_then(|r| self.outcomes.get(r.name.as_str())),
        ) {
            (Some(b), Some(r)) => Some(*b < *r - 0.01),
            _ => None,
        };
        Ok(Some(GateRecord {
            scenario: DL_GATE.into(),
            seed: self.seed,
            verdict: verdict_name(a.verdict).into(),
            statistics: a
                .checks
                .iter()
                .map(|c| GateStatistic {
                    name: c.name.clone(),
                    value: c.value,
                    threshold: Some(c.threshold),
                    flagged: !c.passed,
                })
                .collect(),
            reasons: a.reasons.clone(),
            transfer_hurt: hurt,
            subject: format!(
                "a random-init encoder as the source for AG News (ranked {} of {}; recommended: {})",
                a.rank,
                self.ranking.ranking.len(),
                self.ranking
                    .recommended()
                    .map_or("none", |r| r.name.as_str())
            ),
        }))
    }
}
