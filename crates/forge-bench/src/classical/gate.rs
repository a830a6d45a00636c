//! The transfer gate of the classical scenarios (forge-safety's `gate_linear` /
//! `gate_logistic`) and its ground truth: whether the transfer it validates actually hurt on the
//! held-out test set.

use super::fit::TrialData;
use super::{derive_seed, Stream};
use crate::error::{BenchError, Result};
use crate::scenario::Mode;
use crate::schema::{GateRecord, GateStatistic};
use forge_classical::metrics;
use forge_data::{Budget, TabularDataset};
use forge_safety::validate::{FitData, LinearTransfer, LogisticTransfer, Score};
use forge_safety::{gate_linear, gate_logistic, GateConfig, TransferDecision, Verdict};

/// How much worse (in R2, or in log-loss) than target-only the validated transfer must score on
/// the held-out test set to count as having hurt. Differences below it are within what a test set
/// of a few hundred rows resolves (forge-safety's harmful-source suite uses the same 0.01 band).
pub const HURT_MARGIN: f64 = 0.01;

/// At most this many source rows (a seeded subsample) go into the gate: its permutation tests
/// are quadratic in the sample size, and 1,000 rows already resolve the shifts of these splits.
pub const GATE_SOURCE_CAP: usize = 1_000;

/// What the gate judges, in words (forge-safety's default `LinearTransfer` / `LogisticTransfer`
/// pair): not the warm-start SGD of the headline row.
pub const GATE_SUBJECT: &str =
    "regularized transfer (lam = 10) vs target-only ridge/logistic (lam = 1), on target folds";

/// Snake-case name of a verdict as stored in results files.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Transfer => "transfer",
        Verdict::TransferWithCaution => "transfer_with_caution",
        Verdict::Block => "block",
    }
}

impl TrialData {
    /// The source sample the gate sees: at most [`GATE_SOURCE_CAP`] rows.
    fn gate_source(&self) -> Result<TabularDataset> {
        let cap = GATE_SOURCE_CAP.min(self.source.n_samples());
        Ok(if cap < self.source.n_samples() {
            self.source.subsample(
                Budget::Count(cap),
                derive_seed(self.seed, Stream::GateSource),
            )?
        } else {
            self.source.clone()
        })
    }

    /// Whether the transfer the gate validates (source-regularized fit vs the target-only fit,
    /// both on the whole target training set) scores worse than its target-only baseline on the
    /// held-out test set, in the gate's own score (R2, or negative log-loss for
    /// classification), by more than [`HURT_MARGIN`]. The ground truth the verdict is judged
    /// against.
    pub(crate) fn validated_transfer_hurts(&self) -> Result<bool> {
        let src = self.gate_source()?;
        let fd = FitData {
            source_x: &src.x,
            source_y: &src.y,
            target_x: &self.train.x,
            target_y: &self.train.y,
        };
        let boxed =
            |e: forge_safety::BoxError| BenchError::config("gate ground truth", e.to_string());
        let (transfer, baseline) = if self.cls {
            let lt = LogisticTransfer::default();
            let pt = lt.transfer()(&fd, &self.test.x).map_err(boxed)?;
            let pb = lt.target_only()(&fd, &self.test.x).map_err(boxed)?;
            (
                -metrics::log_loss(&self.test.y, &pt)?,
                -metrics::log_loss(&self.test.y, &pb)?,
            )
        } else {
            let lt = LinearTransfer::default();
            let pt = lt.transfer()(&fd, &self.test.x).map_err(boxed)?;
            let pb = lt.target_only()(&fd, &self.test.x).map_err(boxed)?;
            (
                metrics::r2(&self.test.y, &pt)?,
                metrics::r2(&self.test.y, &pb)?,
            )
        };
        Ok(transfer < baseline - HURT_MARGIN)
    }

    /// Runs the gate (fewer permutations in quick mode).
    pub(crate) fn decide(&self, mode: Mode) -> Result<TransferDecision> {
        let mut cfg = GateConfig::default().with_seed(self.seed);
        cfg.mmd.n_permutations = if mode == Mode::Quick { 200 } else { 500 };
        let src = self.gate_source()?;
        let t = &self.train;
        Ok(if self.cls {
            cfg.validation.score = Score::NegLogLoss;
            gate_logistic(
                &src.x,
                &src.y,
                &t.x,
                &t.y,
                &LogisticTransfer::default(),
                &cfg,
            )?
        } else {
            cfg.validation.score = Score::R2;
            gate_linear(&src.x, &src.y, &t.x, &t.y, &LinearTransfer::default(), &cfg)?
        })
    }

    /// The results-file record of decision `d` for this seed, with its ground truth.
    pub(crate) fn gate_record(&self, scenario: &str, d: &TransferDecision) -> Result<GateRecord> {
        Ok(GateRecord {
            scenario: scenario.to_string(),
            seed: self.seed,
            verdict: verdict_name(d.verdict).to_string(),
            statistics: d
                .checks
                .iter()
                .map(|c| GateStatistic {
                    name: c.name.clone(),
                    value: c.value,
                    threshold: Some(c.threshold),
                    flagged: !c.passed,
                })
                .collect(),
            reasons: d.reasons.clone(),
            transfer_hurt: Some(self.validated_transfer_hurts()?),
            subject: GATE_SUBJECT.to_string(),
        })
    }
}
