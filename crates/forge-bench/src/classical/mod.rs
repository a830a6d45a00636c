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
//! Files: [`strategy`] (the one strategy enum), `fit` (per-seed data and the closed-form
//! fits), `sgd` (the two SGD runs and their stopping rule), `gate` (the transfer gate and its
//! ground truth), `trial` (runs a strategy and measures it).
//!
//! Convergence ("to convergence"): SGD (lr 0.01, batch 32, L2 0.01) stops at the first epoch after which
//! the full-data training objective has not improved by more than 0.1 % (relative) for
//! [`PATIENCE`] consecutive epochs, or at the mode's epoch cap. Both SGD strategies use the same
//! rule, learning rate and batch order; only the initialisation differs. The stopping epoch is
//! found on an unmeasured probe run and the measured run trains exactly that many epochs (SGD
//! here is prefix-deterministic, so this is the same computation as early stopping minus the
//! per-epoch loss evaluation).

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, RunContext, Scenario, StrategySpec, Trial};
use crate::schema::{MeasurePolicy, Metric, Wording};
use forge_data::{Budget, DomainSplit, WineTask};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

mod fit;
mod gate;
mod sgd;
pub mod strategy;
mod trial;

pub use fit::Fitted;
pub use gate::{verdict_name, GATE_SOURCE_CAP, GATE_SUBJECT, HURT_MARGIN};
pub use sgd::{stop_epoch, SgdInit, PATIENCE, REL_TOL, SGD_BATCH, SGD_L2, SGD_LR};
pub use strategy::ClassicalStrategy;

/// Fraction of the target held out for testing.
pub const TEST_FRACTION: f64 = 0.3;
/// Candidate penalties for the cross-validated closed forms.
pub const LAMS: [f64; 6] = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0];

/// Independent random streams derived from one seed (see [`derive_seed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The few-shot subsample of the target training rows.
    Subsample,
    /// The source rows the transfer gate sees.
    GateSource,
}

/// The seed of `stream` for run seed `seed` (the run seed itself drives the train/test split,
/// CV folds and SGD order). The constants are those of the reference results, kept so that the
/// numbers do not change.
pub fn derive_seed(seed: u64, stream: Stream) -> u64 {
    seed ^ match stream {
        Stream::Subsample => 0x5EED,
        Stream::GateSource => 0x6A7E,
    }
}

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
    /// Every split with its scenario name and description, in display order.
    pub const ALL: [(Split, &'static str, &'static str); 5] = [
        (
            Split::Housing,
            "housing",
            "California housing, north -> south of the median latitude (R2)",
        ),
        (Split::Wine, "wine", "Wine quality, red -> white (R2)"),
        (
            Split::Titanic,
            "titanic",
            "Titanic survival, Southampton -> Cherbourg/Queenstown (accuracy)",
        ),
        (
            Split::Cancer,
            "cancer",
            "Breast cancer, small -> large mean radius (accuracy)",
        ),
        (
            Split::Diabetes,
            "diabetes",
            "Diabetes progression, younger -> older patients (R2)",
        ),
    ];

    fn load(self, dir: &Path) -> Result<DomainSplit> {
        Ok(match self {
            Split::Housing => forge_data::california_housing(dir)?,
            Split::Wine => forge_data::wine_quality(dir, WineTask::Regression)?,
            Split::Titanic => forge_data::titanic(dir)?,
            Split::Cancer => forge_data::breast_cancer(dir)?,
            Split::Diabetes => forge_data::diabetes(dir)?,
        })
    }

    fn classification(self) -> bool {
        matches!(self, Split::Titanic | Split::Cancer)
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
        if self.split.classification() {
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

    /// The classical scenario named `name` (one of the [`Split::ALL`] names), if there is one.
    pub fn by_name(name: &str) -> Option<ClassicalScenario> {
        Split::ALL
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|&(split, n, desc)| ClassicalScenario::new(n, desc, split, Corruption::None))
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

/// Registers the classical scenarios in display order: the five real splits, then
/// `harmful-source` (housing with the source relation reversed).
///
/// # Errors
/// [`BenchError::InvalidConfig`] if a name is already registered.
pub fn register(r: &mut crate::Registry) -> Result<()> {
    for (split, name, desc) in Split::ALL {
        r.register(Box::new(ClassicalScenario::new(
            name,
            desc,
            split,
            Corruption::None,
        )))?;
    }
    let housing = ClassicalScenario::by_name("housing")
        .ok_or_else(|| BenchError::config("scenario", "housing missing"))?;
    r.register(Box::new(housing.reversed("harmful-source")?))?;
    Ok(())
}

impl Scenario for ClassicalScenario {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn metric(&self) -> Metric {
        if self.split.classification() {
            Metric::Accuracy
        } else {
            Metric::R2
        }
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        ClassicalStrategy::ALL.iter().map(|s| s.spec()).collect()
    }
    fn headline_strategy(&self) -> &str {
        ClassicalStrategy::HEADLINE.name()
    }
    /// Millisecond fits: repeated inside one measurement window.
    fn measure_policy(&self) -> MeasurePolicy {
        MeasurePolicy::Repeat
    }
    fn wording(&self) -> Wording {
        Wording {
            baseline: "SGD from scratch".into(),
            transfer: "warm-start SGD".into(),
            curve_x: "SGD epochs".into(),
            protocol: "Baseline: mini-batch SGD from zero weights, run to convergence on the \
                       target training data; the transfer warm-starts the same SGD from the \
                       source model and stops with the same rule. Fits of milliseconds are \
                       repeated inside one measurement window and reported per fit."
                .into(),
        }
    }
    fn trial(&self, seed: u64, ctx: &RunContext) -> Result<Box<dyn Trial>> {
        let split = self.data(&ctx.data_dir)?;
        let (train, test) = split.target.train_test_split(TEST_FRACTION, seed)?;
        let train = match target_budget(ctx.mode) {
            Some(c) if c < train.n_samples() => {
                train.subsample(Budget::Count(c), derive_seed(seed, Stream::Subsample))?
            }
            _ => train,
        };
        let cls = self.split.classification();
        let source = split.source;
        let (src, source_cost) = ctx.measure(|| fit::fit_source(&source, cls))?;
        Ok(Box::new(trial::ClassicalTrial {
            scenario: self.name,
            data: fit::TrialData {
                seed,
                cls,
                source,
                train,
                test,
                src,
            },
            source_cost,
            decision: None,
            sgd_epochs: BTreeMap::new(),
        }))
    }
}
