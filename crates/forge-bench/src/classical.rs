//! The classical (tabular, real data) scenarios: housing, wine, titanic, cancer, diabetes, and a
//! harmful-source scenario that the transfer gate must block.
//!
//! Per scenario and seed ([`ClassicalScenario::trial`]): the domain split is standardised with
//! statistics of the SOURCE only; the target is split 70/30 into train and test (seeded); the
//! target training part is subsampled to the mode's budget (few-shot); the source model (ridge or
//! L2 logistic regression, lam = 1) is trained once and its cost measured and recorded as the
//! shared source cost.
//!
//! | strategy | role | what is trained on the target training data |
//! |---|---|---|
//! | `scratch-sgd` | baseline | mini-batch SGD from zero weights (intercept at the target mean / prior log-odds), run to convergence |
//! | `target-only` | reference | closed-form ridge / Newton logistic, lam by 5-fold CV (CV cost included) |
//! | `source-only` | reference | nothing: the source model applied as is |
//! | `warm-start-sgd` | transfer (headline) | the same SGD started from the source weights, same stopping rule |
//! | `regularized` | transfer | `argmin loss + lam ||w - w_src||^2`, lam by 5-fold CV |
//! | `bayesian` | transfer | source posterior as prior (Laplace for logistic) |
//! | `cov-shift` | transfer | importance-weighted source fit blended with a target fit |
//! | `stat-mapping` | transfer | source weights mapped by feature moments (no labels, no steps) |
//! | `adapter` | transfer | rank-r low-rank adapter on the frozen source model |
//! | `gated` | transfer | the transfer gate, then `regularized` if allowed, `target-only` if blocked (gate cost included) |
//!
//! Convergence ("to convergence"): SGD (lr 0.01, batch 32, L2 0.01) stops at the first epoch after which
//! the full-data training objective has not improved by more than 0.1 % (relative) for
//! [`PATIENCE`] consecutive epochs, or at the mode's epoch cap. Both SGD strategies use the same
//! rule, learning rate and batch order; only the initialisation differs. The stopping epoch is
//! found on an unmeasured probe run and the measured run trains exactly that many epochs (SGD
//! here is prefix-deterministic, so this is the same computation as early stopping minus the
//! per-epoch loss evaluation).

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{
    ConvergenceCurve, GateRecord, GateStatistic, Measurement, Metric, StrategyKind,
};
use candle_core::Tensor;
use forge_classical::cv::{select, CvParams};
use forge_classical::{
    bayesian_transfer_linear, bayesian_transfer_logistic, covariance_shift_transfer,
    covariance_shift_transfer_logistic, fit_linear_sgd, fit_logistic, fit_logistic_sgd,
    fit_low_rank_adapter, metrics, regularized_transfer_linear, regularized_transfer_logistic,
    ridge, stat_mapping, AdapterParams, CovShiftParams, LinearModel, LogisticModel, SgdParams,
};
use forge_data::{Budget, DomainSplit, TabularDataset, WineTask};
use forge_safety::validate::{FitData, LinearTransfer, LogisticTransfer, Score};
use forge_safety::{gate_linear, gate_logistic, GateConfig, TransferDecision, Verdict};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Epochs without a 0.1 % improvement of the training objective before SGD stops.
pub const PATIENCE: usize = 2;
/// Relative improvement that counts as progress for the stopping rule.
pub const REL_TOL: f64 = 1e-3;
/// SGD learning rate (both SGD strategies).
pub const SGD_LR: f64 = 0.01;
/// SGD mini-batch size.
pub const SGD_BATCH: usize = 32;
/// L2 penalty `l2/2 ||w||^2` of both SGD strategies (keeps the logistic optimum finite on
/// near-separable data, so "convergence" is well defined).
pub const SGD_L2: f64 = 1e-2;
/// Fraction of the target held out for testing.
pub const TEST_FRACTION: f64 = 0.3;
/// Candidate penalties for the cross-validated closed forms.
pub const LAMS: [f64; 6] = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];

/// Which shipped split a scenario uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// California housing, north -> south (regression).
    Housing,
    /// Wine quality, red -> white (regression on quality).
    Wine,
    /// Titanic, Southampton -> Cherbourg/Queenstown (survival, binary).
    Titanic,
    /// Breast cancer, small -> large mean radius (binary).
    Cancer,
    /// Diabetes, younger -> older (regression).
    Diabetes,
}

impl Split {
    fn load(self, dir: &Path) -> Result<DomainSplit> {
        Ok(match self {
            Split::Housing => forge_data::california_housing(dir)?,
            Split::Wine => forge_data::wine_quality(dir, WineTask::Regression)?,
            Split::Titanic => forge_data::titanic(dir)?,
            Split::Cancer => forge_data::breast_cancer(dir)?,
            Split::Diabetes => forge_data::diabetes(dir)?,
        })
    }
}

/// How the source domain is corrupted (for the negative-transfer scenario).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The real source.
    None,
    /// The source relation reversed: `y -> 2 mean(y) - y` (regression).
    SignFlip,
}

/// A classical scenario on a shipped split.
pub struct ClassicalScenario {
    name: &'static str,
    description: String,
    split: Split,
    corruption: Corruption,
    cache: Mutex<Option<DomainSplit>>,
}

impl std::fmt::Debug for ClassicalScenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassicalScenario")
            .field("name", &self.name)
            .field("split", &self.split)
            .field("corruption", &self.corruption)
            .finish()
    }
}

impl ClassicalScenario {
    /// A scenario named `name` on `split`.
    pub fn new(
        name: &'static str,
        description: &str,
        split: Split,
        corruption: Corruption,
    ) -> Self {
        Self {
            name,
            description: description.to_string(),
            split,
            corruption,
            cache: Mutex::new(None),
        }
    }

    /// The same split with the source relation reversed (`y -> 2 mean(y) - y`): a harmful source
    /// for the story and tests.
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] for classification splits (reversal is defined for
    /// regression only).
    pub fn reversed(&self, name: &'static str) -> Result<ClassicalScenario> {
        if self.classification() {
            return Err(BenchError::config(
                "reversed",
                format!("{} is a classification split", self.name),
            ));
        }
        Ok(ClassicalScenario::new(
            name,
            &format!(
                "{} with the source relation reversed (y -> 2 mean - y)",
                self.description
            ),
            self.split,
            Corruption::SignFlip,
        ))
    }

    /// The classical scenario named `name`, if there is one.
    pub fn by_name(name: &str) -> Option<ClassicalScenario> {
        let (split, desc) = match name {
            "housing" => (
                Split::Housing,
                "California housing, north -> south of the median latitude (R2)",
            ),
            "wine" => (Split::Wine, "Wine quality, red -> white (R2)"),
            "titanic" => (
                Split::Titanic,
                "Titanic survival, Southampton -> Cherbourg/Queenstown (accuracy)",
            ),
            "cancer" => (
                Split::Cancer,
                "Breast cancer, small -> large mean radius (accuracy)",
            ),
            "diabetes" => (
                Split::Diabetes,
                "Diabetes progression, younger -> older patients (R2)",
            ),
            _ => return None,
        };
        let name: &'static str = match name {
            "housing" => "housing",
            "wine" => "wine",
            "titanic" => "titanic",
            "cancer" => "cancer",
            _ => "diabetes",
        };
        Some(ClassicalScenario::new(name, desc, split, Corruption::None))
    }

    fn classification(&self) -> bool {
        matches!(self.split, Split::Titanic | Split::Cancer)
    }

    /// The standardised (and, for the negative scenario, corrupted) split, loaded once.
    fn data(&self, dir: &Path) -> Result<DomainSplit> {
        let mut guard = self
            .cache
            .lock()
            .map_err(|_| BenchError::config("scenario cache", "mutex poisoned"))?;
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let mut split = self.split.load(dir)?.standardized()?;
        if self.corruption == Corruption::SignFlip {
            let y = &split.source.y;
            let mean = y.mean_all()?.to_scalar::<f64>()?;
            split.source.y = y.affine(-1.0, 2.0 * mean)?;
        }
        *guard = Some(split.clone());
        Ok(split)
    }
}

/// Target training rows per mode (`None` = the whole target training part).
pub fn target_budget(mode: Mode) -> Option<usize> {
    match mode {
        Mode::Quick => Some(300),
        Mode::Standard => Some(500),
        Mode::Full => None,
    }
}

/// Epoch cap of the SGD strategies per mode.
pub fn max_epochs(mode: Mode) -> usize {
    match mode {
        Mode::Quick => 150,
        Mode::Standard | Mode::Full => 300,
    }
}

/// The classical registry in display order.
///
/// # Errors
/// Never in practice (registration is validated).
pub fn registry() -> Result<crate::Registry> {
    let mut r = crate::Registry::new();
    for name in ["housing", "wine", "titanic", "cancer", "diabetes"] {
        let sc = ClassicalScenario::by_name(name)
            .ok_or_else(|| BenchError::config("scenario", format!("{name:?} missing")))?;
        r.register(Box::new(sc))?;
    }
    let housing = ClassicalScenario::by_name("housing")
        .ok_or_else(|| BenchError::config("scenario", "housing missing"))?;
    r.register(Box::new(housing.reversed("harmful-source")?))?;
    Ok(r)
}

/// A [`RunContext`] for `mode` with the forge-carbon meter (FORGE_* environment overrides apply).
///
/// # Errors
/// Invalid carbon configuration in the environment.
pub fn context(mode: Mode, data_dir: std::path::PathBuf) -> Result<RunContext> {
    Ok(RunContext {
        mode,
        data_dir,
        min_measure_s: mode.default_min_measure_s(),
        max_repeats: 200,
        meter: Box::new(crate::carbon::CarbonMeter::from_env()?),
    })
}

const STRATS: [(&str, StrategyKind, bool, &str); 10] = [
    (
        crate::SCRATCH,
        StrategyKind::Baseline,
        false,
        "mini-batch SGD from zero weights, to convergence",
    ),
    (
        "target-only",
        StrategyKind::Reference,
        false,
        "closed form on the target data, lam by 5-fold CV",
    ),
    (
        "source-only",
        StrategyKind::Reference,
        true,
        "the source model as is (no target training)",
    ),
    (
        crate::WARM_START,
        StrategyKind::Transfer,
        true,
        "the same SGD warm-started from the source weights",
    ),
    (
        "regularized",
        StrategyKind::Transfer,
        true,
        "penalty lam ||w - w_src||^2, lam by 5-fold CV",
    ),
    (
        "bayesian",
        StrategyKind::Transfer,
        true,
        "source posterior as the target prior",
    ),
    (
        "cov-shift",
        StrategyKind::Transfer,
        true,
        "importance-weighted source fit blended with a target fit",
    ),
    (
        "stat-mapping",
        StrategyKind::Transfer,
        true,
        "source weights mapped by feature moments (no labels)",
    ),
    (
        "adapter",
        StrategyKind::Transfer,
        true,
        "rank-2 adapter on the frozen source weights",
    ),
    (
        "gated",
        StrategyKind::Transfer,
        true,
        "transfer gate, then regularized if allowed, else target-only",
    ),
];

impl Scenario for ClassicalScenario {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn metric(&self) -> Metric {
        if self.classification() {
            Metric::Accuracy
        } else {
            Metric::R2
        }
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        STRATS
            .iter()
            .map(|(n, k, u, d)| StrategySpec::new(n, *k, *u, d))
            .collect()
    }
    fn headline_strategy(&self) -> &str {
        crate::WARM_START
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        let split = self.data(&ctx.data_dir)?;
        let (train, test) = split.target.train_test_split(TEST_FRACTION, seed)?;
        let train = match target_budget(ctx.mode) {
            Some(c) if c < train.n_samples() => train.subsample(Budget::Count(c), seed ^ 0x5EED)?,
            _ => train,
        };
        let cls = self.classification();
        let source = split.source;
        let (src, source_cost) = ctx.measure(|| fit_source(&source, cls))?;
        Ok(Box::new(ClassicalTrial {
            scenario: self.name,
            seed,
            cls,
            source,
            train,
            test,
            src,
            source_cost,
            decision: None,
            sgd_epochs: BTreeMap::new(),
        }))
    }
}

/// A fitted model of either task.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// Regression.
    Linear(LinearModel),
    /// Binary classification.
    Logistic(LogisticModel),
}

impl Fitted {
    /// The linear part (weights and intercept) of the model.
    pub fn linear(&self) -> LinearModel {
        match self {
            Fitted::Linear(m) => m.clone(),
            Fitted::Logistic(m) => m.linear_part(),
        }
    }

    /// Held-out quality: R2 for regression, accuracy for classification.
    ///
    /// # Errors
    /// Shape errors.
    pub fn quality(&self, d: &TabularDataset) -> Result<f64> {
        Ok(match self {
            Fitted::Linear(m) => metrics::r2(&d.y, &m.predict(&d.x)?)?,
            Fitted::Logistic(m) => metrics::accuracy(&d.y, &m.predict(&d.x)?)?,
        })
    }
}

fn fit_source(source: &TabularDataset, cls: bool) -> Result<Fitted> {
    Ok(if cls {
        Fitted::Logistic(fit_logistic(&source.x, &source.y, 1.0)?)
    } else {
        Fitted::Linear(ridge(&source.x, &source.y, 1.0)?)
    })
}

struct ClassicalTrial {
    scenario: &'static str,
    seed: u64,
    cls: bool,
    source: TabularDataset,
    train: TabularDataset,
    test: TabularDataset,
    src: Fitted,
    source_cost: Measurement,
    decision: Option<TransferDecision>,
    sgd_epochs: BTreeMap<String, usize>,
}

/// The stopping epoch of the rule described in the module docs, from per-epoch training losses.
pub fn stop_epoch(loss: &[f64], rel_tol: f64, patience: usize) -> usize {
    let mut best = f64::INFINITY;
    let mut since = 0;
    for (i, &l) in loss.iter().enumerate() {
        if l < best * (1.0 - rel_tol) || !best.is_finite() {
            best = l;
            since = 0;
        } else {
            since += 1;
            if since >= patience {
                return i + 1;
            }
        }
    }
    loss.len()
}

impl ClassicalTrial {
    fn sgd_params(&self, init: LinearModel, epochs: usize) -> SgdParams {
        SgdParams::default()
            .lr(SGD_LR)
            .batch_size(SGD_BATCH)
            .seed(self.seed)
            .l2(SGD_L2)
            .epochs(epochs)
            .warm_start(init)
    }

    fn sgd(&self, init: LinearModel, epochs: usize) -> Result<(Fitted, u64)> {
        let p = self.sgd_params(init, epochs);
        Ok(if self.cls {
            let (m, h) = fit_logistic_sgd(&self.train.x, &self.train.y, &p)?;
            (Fitted::Logistic(m), h.steps as u64)
        } else {
            let (m, h) = fit_linear_sgd(&self.train.x, &self.train.y, &p)?;
            (Fitted::Linear(m), h.steps as u64)
        })
    }

    fn sgd_losses(&self, init: LinearModel, epochs: usize) -> Result<Vec<f64>> {
        let p = self.sgd_params(init, epochs);
        Ok(if self.cls {
            fit_logistic_sgd(&self.train.x, &self.train.y, &p)?
                .1
                .epoch_loss
        } else {
            fit_linear_sgd(&self.train.x, &self.train.y, &p)?
                .1
                .epoch_loss
        })
    }

    /// Zero weights, intercept at the target mean (regression) or prior log-odds (binary).
    fn scratch_init(&self) -> Result<LinearModel> {
        let d = self.train.n_features();
        let m = self.train.y.mean_all()?.to_scalar::<f64>()?;
        let b = if self.cls {
            let p = m.clamp(1e-3, 1.0 - 1e-3);
            (p / (1.0 - p)).ln()
        } else {
            m
        };
        Ok(LinearModel::from_vec(vec![0.0; d], b)?)
    }

    fn init_for(&self, strategy: &str) -> Result<LinearModel> {
        if strategy == crate::SCRATCH {
            self.scratch_init()
        } else {
            Ok(self.src.linear())
        }
    }

    fn cv(&self) -> CvParams {
        CvParams {
            k: 5,
            seed: self.seed,
            stratified: self.cls,
        }
    }

    /// CV score of a candidate: R2 (regression) or negative log-loss (classification).
    fn cv_lam(&self, fit: impl Fn(&Tensor, &Tensor, f64) -> Result<Fitted>) -> Result<f64> {
        let cls = self.cls;
        let choice = select(
            &self.train.x,
            &self.train.y,
            &LAMS,
            &self.cv(),
            |xt, yt, xv, yv, &lam| {
                let m = fit(xt, yt, lam).map_err(|e| {
                    forge_classical::ClassicalError::InvalidParameter {
                        name: "cv fit",
                        reason: e.to_string(),
                    }
                })?;
                match m {
                    Fitted::Linear(m) => metrics::r2(yv, &m.predict(xv)?),
                    Fitted::Logistic(m) => {
                        let _ = cls;
                        Ok(-metrics::log_loss(yv, &m.predict_proba(xv)?)?)
                    }
                }
            },
        )?;
        Ok(choice.best)
    }

    fn target_only(&self) -> Result<Fitted> {
        let cls = self.cls;
        let fit = move |x: &Tensor, y: &Tensor, lam: f64| -> Result<Fitted> {
            Ok(if cls {
                Fitted::Logistic(fit_logistic(x, y, lam)?)
            } else {
                Fitted::Linear(ridge(x, y, lam)?)
            })
        };
        let lam = self.cv_lam(fit)?;
        fit(&self.train.x, &self.train.y, lam)
    }

    fn regularized(&self) -> Result<Fitted> {
        let src = self.src.clone();
        let fit = move |x: &Tensor, y: &Tensor, lam: f64| -> Result<Fitted> {
            Ok(match &src {
                Fitted::Logistic(s) => {
                    Fitted::Logistic(regularized_transfer_logistic(x, y, s, lam)?)
                }
                Fitted::Linear(s) => Fitted::Linear(regularized_transfer_linear(x, y, s, lam)?),
            })
        };
        let lam = self.cv_lam(&fit)?;
        fit(&self.train.x, &self.train.y, lam)
    }

    /// Empirical-Bayes prior scale: `tau^2` = mean squared source weight; noise `sigma^2` =
    /// the source model's residual variance on the source data.
    fn bayesian(&self) -> Result<Fitted> {
        let w = self.src.linear().weights_vec()?;
        let tau2 = (w.iter().map(|v| v * v).sum::<f64>() / w.len().max(1) as f64).max(1e-6);
        Ok(match &self.src {
            Fitted::Logistic(s) => Fitted::Logistic(
                bayesian_transfer_logistic(&self.train.x, &self.train.y, s, tau2)?.map,
            ),
            Fitted::Linear(s) => {
                let sigma2 = metrics::mse(&self.source.y, &s.predict(&self.source.x)?)?.max(1e-9);
                Fitted::Linear(
                    bayesian_transfer_linear(&self.train.x, &self.train.y, s, sigma2, tau2)?.mean,
                )
            }
        })
    }

    fn cov_shift(&self) -> Result<Fitted> {
        let p = CovShiftParams::default().seed(self.seed);
        let (s, t) = (&self.source, &self.train);
        Ok(if self.cls {
            Fitted::Logistic(covariance_shift_transfer_logistic(&s.x, &s.y, &t.x, &t.y, &p)?.model)
        } else {
            Fitted::Linear(covariance_shift_transfer(&s.x, &s.y, &t.x, &t.y, &p)?.model)
        })
    }

    fn stat_mapping(&self) -> Result<Fitted> {
        let mapped = stat_mapping(&self.src.linear(), &self.source.x, &self.train.x)?;
        Ok(match &self.src {
            Fitted::Logistic(_) => {
                Fitted::Logistic(LogisticModel::new(&mapped.weights, mapped.intercept)?)
            }
            Fitted::Linear(_) => Fitted::Linear(mapped),
        })
    }

    fn adapter_params(&self) -> AdapterParams {
        AdapterParams::default()
            .rank(2.min(self.train.n_features()))
            .seed(self.seed)
    }

    fn adapter(&self) -> Result<Fitted> {
        let p = self.adapter_params();
        Ok(match &self.src {
            Fitted::Logistic(s) => {
                Fitted::Logistic(fit_low_rank_adapter(&self.train.x, &self.train.y, s, &p)?.model)
            }
            Fitted::Linear(s) => {
                Fitted::Linear(fit_low_rank_adapter(&self.train.x, &self.train.y, s, &p)?.model)
            }
        })
    }

    /// The transfer gate on (a subsample of) the source and the target training data.
    /// The source sample the gate sees: at most 1,000 rows (seeded subsample).
    fn gate_source(&self) -> Result<TabularDataset> {
        let cap = 1_000.min(self.source.n_samples());
        Ok(if cap < self.source.n_samples() {
            self.source
                .subsample(Budget::Count(cap), self.seed ^ 0x6A7E)?
        } else {
            self.source.clone()
        })
    }

    /// Whether the transfer the gate validates (forge-safety's default `LinearTransfer` /
    /// `LogisticTransfer` pair: source-regularized fit vs the target-only fit, both on the whole
    /// target training set) scores worse than its target-only baseline on the held-out test
    /// set, in the gate's own score (R2, or negative log-loss for classification), by more than
    /// [`HURT_MARGIN`]. This is the ground truth the verdict is judged against.
    fn validated_transfer_hurts(&self) -> Result<bool> {
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

    fn decide(&self, mode: Mode) -> Result<TransferDecision> {
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

    fn n_params(&self) -> u64 {
        self.train.n_features() as u64 + 1
    }
}

impl Trial for ClassicalTrial {
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let np = self.n_params();
        let mut steps = 0u64;
        let mut epochs = None;
        let mut note = None;
        let (model, training, params) = match strategy {
            crate::SCRATCH | crate::WARM_START => {
                let init = self.init_for(strategy)?;
                let losses = self.sgd_losses(init.clone(), max_epochs(ctx.mode))?;
                let e = stop_epoch(&losses, REL_TOL, PATIENCE);
                self.sgd_epochs.insert(strategy.to_string(), e);
                let ((m, s), t) = ctx.measure(|| self.sgd(init.clone(), e))?;
                steps = s;
                epochs = Some(e as u32);
                if e == max_epochs(ctx.mode) {
                    note = Some(format!("hit the epoch cap ({e})"));
                }
                (m, t, np)
            }
            "target-only" => {
                let (m, t) = ctx.measure(|| self.target_only())?;
                (m, t, np)
            }
            "source-only" => {
                let (m, t) = ctx.measure(|| Ok(self.src.clone()))?;
                (m, t, 0)
            }
            "regularized" => {
                let (m, t) = ctx.measure(|| self.regularized())?;
                (m, t, np)
            }
            "bayesian" => {
                let (m, t) = ctx.measure(|| self.bayesian())?;
                (m, t, np)
            }
            "cov-shift" => {
                let (m, t) = ctx.measure(|| self.cov_shift())?;
                (m, t, np)
            }
            "stat-mapping" => {
                let (m, t) = ctx.measure(|| self.stat_mapping())?;
                (m, t, 0)
            }
            "adapter" => {
                let (m, t) = ctx.measure(|| self.adapter())?;
                (m, t, self.adapter_params().rank as u64 + 1)
            }
            "gated" => {
                let mode = ctx.mode;
                let ((m, d), t) = ctx.measure_once(|| {
                    let d = self.decide(mode)?;
                    let m = if d.verdict == Verdict::Block {
                        self.target_only()?
                    } else {
                        self.regularized()?
                    };
                    Ok((m, d))
                })?;
                note = Some(format!(
                    "gate: {:?} -> {}",
                    d.verdict,
                    if d.verdict == Verdict::Block {
                        "target-only"
                    } else {
                        "regularized"
                    }
                ));
                self.decision = Some(d);
                (m, t, np)
            }
            other => {
                return Err(BenchError::UnknownStrategy {
                    scenario: self.scenario.into(),
                    strategy: other.into(),
                })
            }
        };
        let quality = model.quality(&self.test)?;
        let mut extra = BTreeMap::new();
        extra.insert("n_target_train".to_string(), self.train.n_samples() as f64);
        extra.insert("n_target_test".to_string(), self.test.n_samples() as f64);
        Ok(StrategyOutcome {
            quality,
            extra_metrics: extra,
            trainable_params: params,
            gradient_steps: steps,
            epochs,
            training,
            note,
        })
    }

    fn source_cost(&self) -> Option<Measurement> {
        Some(self.source_cost.clone())
    }

    /// Held-out quality after each epoch for both SGD strategies, up to 1.2x the scratch run's
    /// stopping epoch (recomputed unmeasured: SGD is prefix-deterministic, so the first `e`
    /// epochs of a longer run equal an `e`-epoch run).
    fn convergence(&mut self, ctx: &RunContext) -> Result<Vec<ConvergenceCurve>> {
        let scratch_e = self.sgd_epochs.get(crate::SCRATCH).copied().unwrap_or(30);
        let n = ((scratch_e as f64 * 1.2).ceil() as usize).clamp(5, max_epochs(ctx.mode));
        let mut out = Vec::new();
        for st in [crate::SCRATCH, crate::WARM_START] {
            let init = self.init_for(st)?;
            let mut q = Vec::with_capacity(n + 1);
            for e in 0..=n {
                let (m, _) = self.sgd(init.clone(), e)?;
                q.push(m.quality(&self.test)?);
            }
            out.push(ConvergenceCurve {
                scenario: self.scenario.to_string(),
                strategy: st.to_string(),
                seed: self.seed,
                metric: if self.cls {
                    Metric::Accuracy
                } else {
                    Metric::R2
                },
                quality: q,
            });
        }
        Ok(out)
    }

    fn gate(&mut self, ctx: &RunContext) -> Result<Option<GateRecord>> {
        let d = match self.decision.take() {
            Some(d) => d,
            None => self.decide(ctx.mode)?,
        };
        let hurt = Some(self.validated_transfer_hurts()?);
        Ok(Some(GateRecord {
            scenario: self.scenario.to_string(),
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
            transfer_hurt: hurt,
        }))
    }
}

/// How much worse (in R2, or in log-loss) than target-only the validated transfer must score on
/// the held-out test set to count as having hurt. Differences below it are within what a test set
/// of a few hundred rows resolves (forge-safety's harmful-source suite uses the same 0.01 band).
pub const HURT_MARGIN: f64 = 0.01;

/// Snake-case name of a verdict as stored in results files.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Transfer => "transfer",
        Verdict::TransferWithCaution => "transfer_with_caution",
        Verdict::Block => "block",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_rule_counts_patience_epochs() {
        // improving by 10 % per epoch, then flat from epoch 4: stops after 4 + PATIENCE epochs
        let l = [10.0, 9.0, 8.1, 7.29, 7.29, 7.29, 7.29, 7.29];
        assert_eq!(stop_epoch(&l, REL_TOL, 2), 6);
        // a warm start already at the optimum stops after 1 + patience epochs
        assert_eq!(stop_epoch(&[1.0, 1.0, 1.0, 1.0], REL_TOL, 2), 3);
        // never converging: the cap
        let l: Vec<f64> = (0..10).map(|i| 100.0 - i as f64).collect();
        assert_eq!(stop_epoch(&l, REL_TOL, 2), 10);
    }
}
