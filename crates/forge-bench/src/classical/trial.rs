//! One seed of a classical scenario: trains each [`ClassicalStrategy`], measuring only the
//! training, and provides the convergence curves and the gate decision.

use super::fit::{Fitted, TrialData};
use super::sgd::{stop_epoch, SgdInit, PATIENCE, REL_TOL, SGD_BATCH, SGD_L2, SGD_LR};
use super::strategy::ClassicalStrategy;
use super::{max_epochs, LAMS};
use crate::error::{BenchError, Result};
use crate::scenario::{RunContext, StrategyOutcome, Trial};
use crate::schema::{Config, ConvergenceCurve, GateRecord, Measurement, Metric};
use forge_safety::{TransferDecision, Verdict};
use std::collections::BTreeMap;

/// The convergence view runs SGD to this multiple of the baseline's stopping epoch, so the
/// flat tail after convergence is visible.
const CURVE_OVERSHOOT: f64 = 1.2;
/// Convergence curves have at least this many epochs.
const MIN_CURVE_EPOCHS: usize = 5;

pub(crate) struct ClassicalTrial {
    pub(crate) scenario: &'static str,
    pub(crate) data: TrialData,
    pub(crate) source_cost: Measurement,
    /// The decision of the `gated` strategy, reused by [`Trial::gate`].
    pub(crate) decision: Option<TransferDecision>,
    /// Stopping epoch of each SGD strategy run so far.
    pub(crate) sgd_epochs: BTreeMap<ClassicalStrategy, usize>,
}

fn init_of(s: ClassicalStrategy) -> SgdInit {
    if s == ClassicalStrategy::ScratchSgd {
        SgdInit::Zero
    } else {
        SgdInit::Source
    }
}

impl ClassicalTrial {
    fn metric(&self) -> Metric {
        if self.data.cls {
            Metric::Accuracy
        } else {
            Metric::R2
        }
    }

    /// The configuration recorded with each strategy's result.
    fn config(&self, s: ClassicalStrategy, ctx: &RunContext) -> Config {
        let mut c = Config::new();
        let family = if self.data.cls {
            "logistic regression"
        } else {
            "linear regression"
        };
        c.insert("model".into(), family.into());
        c.insert("n_features".into(), self.data.train.n_features().into());
        match s {
            ClassicalStrategy::ScratchSgd | ClassicalStrategy::WarmStartSgd => {
                c.insert("lr".into(), SGD_LR.into());
                c.insert("batch_size".into(), SGD_BATCH.into());
                c.insert("l2".into(), SGD_L2.into());
                c.insert("max_epochs".into(), max_epochs(ctx.mode).into());
                c.insert("stop_rel_tol".into(), REL_TOL.into());
                c.insert("stop_patience".into(), PATIENCE.into());
                let init = if s == ClassicalStrategy::ScratchSgd {
                    "zero"
                } else {
                    "source"
                };
                c.insert("init".into(), init.into());
            }
            ClassicalStrategy::TargetOnly | ClassicalStrategy::Regularized => {
                c.insert("lam_grid".into(), format!("{LAMS:?}").into());
                c.insert("cv_folds".into(), 5usize.into());
            }
            ClassicalStrategy::Adapter => {
                c.insert("rank".into(), self.data.adapter_params().rank.into());
            }
            ClassicalStrategy::Gated => {
                c.insert("gate".into(), super::gate::GATE_SUBJECT.into());
            }
            _ => {}
        }
        c
    }

    /// Trains one SGD strategy to its stopping epoch (found on an unmeasured probe run).
    fn run_sgd(
        &mut self,
        s: ClassicalStrategy,
        ctx: &RunContext,
    ) -> Result<(Fitted, Measurement, u64, u32, Option<String>)> {
        let cap = max_epochs(ctx.mode);
        let init = self.data.sgd_init(init_of(s))?;
        let losses = self.data.sgd_losses(&init, cap)?;
        let e = stop_epoch(&losses, REL_TOL, PATIENCE);
        self.sgd_epochs.insert(s, e);
        let data = &self.data;
        let ((m, steps), t) = ctx.measure(|| data.sgd(&init, e))?;
        let note = (e == cap).then(|| format!("hit the epoch cap ({e})"));
        Ok((m, t, steps, e as u32, note))
    }
}

impl Trial for ClassicalTrial {
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let s =
            ClassicalStrategy::from_name(strategy).ok_or_else(|| BenchError::UnknownStrategy {
                scenario: self.scenario.into(),
                strategy: strategy.into(),
            })?;
        let np = self.data.n_params();
        let mut steps = 0u64;
        let mut epochs = None;
        let mut note = None;
        let d = &self.data;
        let (model, training, params) = match s {
            ClassicalStrategy::ScratchSgd | ClassicalStrategy::WarmStartSgd => {
                let (m, t, st, e, n) = self.run_sgd(s, ctx)?;
                steps = st;
                epochs = Some(e);
                note = n;
                (m, t, np)
            }
            ClassicalStrategy::TargetOnly => {
                let (m, t) = ctx.measure(|| d.target_only())?;
                (m, t, np)
            }
            ClassicalStrategy::SourceOnly => {
                let (m, t) = ctx.measure(|| Ok(d.src.clone()))?;
                (m, t, 0)
            }
            ClassicalStrategy::Regularized => {
                let (m, t) = ctx.measure(|| d.regularized())?;
                (m, t, np)
            }
            ClassicalStrategy::Bayesian => {
                let (m, t) = ctx.measure(|| d.bayesian())?;
                (m, t, np)
            }
            ClassicalStrategy::CovShift => {
                let (m, t) = ctx.measure(|| d.cov_shift())?;
                (m, t, np)
            }
            ClassicalStrategy::StatMapping => {
                let (m, t) = ctx.measure(|| d.stat_mapping())?;
                (m, t, 0)
            }
            ClassicalStrategy::Adapter => {
                let (m, t) = ctx.measure(|| d.adapter())?;
                (m, t, d.adapter_params().rank as u64 + 1)
            }
            ClassicalStrategy::Gated => {
                let mode = ctx.mode;
                let ((m, dec), t) = ctx.measure_once(|| {
                    let dec = d.decide(mode)?;
                    let m = if dec.verdict == Verdict::Block {
                        d.target_only()?
                    } else {
                        d.regularized()?
                    };
                    Ok((m, dec))
                })?;
                let fallback = if dec.verdict == Verdict::Block {
                    ClassicalStrategy::TargetOnly
                } else {
                    ClassicalStrategy::Regularized
                };
                note = Some(format!("gate: {:?} -> {fallback}", dec.verdict));
                self.decision = Some(dec);
                (m, t, np)
            }
        };
        let quality = model.quality(&self.data.test)?;
        let mut extra = BTreeMap::new();
        extra.insert(
            "n_target_train".to_string(),
            self.data.train.n_samples() as f64,
        );
        extra.insert(
            "n_target_test".to_string(),
            self.data.test.n_samples() as f64,
        );
        Ok(StrategyOutcome {
            quality,
            extra_metrics: extra,
            trainable_params: params,
            gradient_steps: steps,
            epochs,
            training,
            note,
            config: self.config(s, ctx),
        })
    }

    fn source_cost(&self) -> Option<Measurement> {
        Some(self.source_cost.clone())
    }

    /// Held-out quality after each epoch for both SGD strategies, up to [`CURVE_OVERSHOOT`] x
    /// the baseline's stopping epoch (recomputed unmeasured: SGD is prefix-deterministic, so
    /// the first `e` epochs of a longer run equal an `e`-epoch run).
    fn convergence(&mut self, ctx: &RunContext) -> Result<Vec<ConvergenceCurve>> {
        let base_e = self
            .sgd_epochs
            .get(&ClassicalStrategy::ScratchSgd)
            .copied()
            .unwrap_or(30);
        let n = ((base_e as f64 * CURVE_OVERSHOOT).ceil() as usize)
            .clamp(MIN_CURVE_EPOCHS, max_epochs(ctx.mode));
        let mut out = Vec::new();
        for s in ClassicalStrategy::ALL.into_iter().filter(|s| s.is_sgd()) {
            let init = self.data.sgd_init(init_of(s))?;
            let mut q = Vec::with_capacity(n + 1);
            for e in 0..=n {
                let (m, _) = self.data.sgd(&init, e)?;
                q.push(m.quality(&self.data.test)?);
            }
            out.push(ConvergenceCurve {
                scenario: self.scenario.to_string(),
                strategy: s.name().to_string(),
                seed: self.data.seed,
                metric: self.metric(),
                quality: q,
            });
        }
        Ok(out)
    }

    fn gate(&mut self, ctx: &RunContext) -> Result<Option<GateRecord>> {
        let d = match self.decision.take() {
            Some(d) => d,
            None => self.data.decide(ctx.mode)?,
        };
        Ok(Some(self.data.gate_record(self.scenario, &d)?))
    }
}
