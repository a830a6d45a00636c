//! The encoder gate: rank candidate source models (encoders, fine-tunes, adapters) for a
//! labelled target sample before any fine-tuning energy is spent, and flag the harmful ones.
//!
//! Each candidate is given by its features on the same labelled target sample (e.g. pooled
//! hidden states from `forge_models::extract_representations`), optionally with its source
//! head's probabilities on that sample (for LEEP) and its features of source-domain examples
//! (for the representation shift). Evidence per candidate:
//!
//! | statistic | method | rule | if it fails |
//! |---|---|---|---|
//! | `logme_p_value` | LogME (You et al. 2021) against a shuffled-label permutation null, `p = (k + 1) / (B + 1)` | `<= alpha` | **block**: the features carry no evidence about the target labels |
//! | `logme_gain_fraction` | `(LogME - null mean)` / the best candidate's | `>= block_fraction` (0.5) | **block**: dominated by a better source |
//! | `logme_gain_fraction` | same | `>= caution_fraction` (0.9) | caution |
//! | `leep_p_value` | LEEP (Nguyen et al. 2020) against its permutation null | `<= alpha` | **block**: the source head's predictions carry no information |
//! | `leep_gain_fraction` | LEEP gain over `sum p(y) log p(y)` / the best candidate's | `>= caution_fraction` | caution |
//! | `representation_mmd_p_value` | [`representation_mmd`] source vs target features | `> alpha` | caution (shift in representation space) |
//! | `cka_to_reference` | unbiased linear CKA against reference features (e.g. the pretrained encoder's) | `>= cka_caution` (0.5) | caution (the representation moved away from the reference) |
//!
//! Ranking: by LogME (the paper's use: one score comparable across feature extractors of any
//! dimension on the same target), ties broken by LEEP. The verdicts use the tabular gate's
//! vocabulary ([`Verdict`]): `Block` on any failed block rule, `TransferWithCaution` on any
//! failed caution rule, else `Transfer`. The permutation nulls make the two block rules
//! self-calibrating: a randomly initialised encoder whose pooled features still carry some
//! bag-of-words signal passes the null test but is dominated by a pretrained one; a source
//! fine-tuned on shuffled labels has a head with no information (LEEP null) and features whose
//! evidence falls well below a sensible source's.

use crate::cka::{CkaConfig, CkaEstimator, Prepared};
use crate::gate::{Check, Consequence, Verdict};
use crate::input::check_unit;
use crate::leep::{leep_rows, prepare, Leep};
use crate::logme::{check_labels, one_hot, LogMe, LogMeBasis};
use crate::representation::{representation_mmd, RepresentationMmd, RepresentationMmdConfig};
use crate::{Result, SafetyError};
use candle_core::Tensor;
use forge_linalg::rng::{permutation, seeded_rng};
use serde::{Deserialize, Serialize};

/// One candidate source.
#[derive(Debug, Clone)]
pub struct SourceCandidate {
    /// A name for the reports.
    pub name: String,
    /// Its features of the labelled target sample, `[n, d]`.
    pub features: Tensor,
    /// Its source head's probabilities on the target sample, `[n, c_s]` (for LEEP).
    pub source_probs: Option<Tensor>,
    /// Its features of source-domain examples, `[m, d]` (for the representation shift).
    pub source_features: Option<Tensor>,
}

impl SourceCandidate {
    /// A candidate with target features only.
    pub fn new(name: impl Into<String>, features: Tensor) -> Self {
        Self {
            name: name.into(),
            features,
            source_probs: None,
            source_features: None,
        }
    }

    /// Adds the source head's probabilities on the target sample.
    pub fn with_source_probs(mut self, probs: Tensor) -> Self {
        self.source_probs = Some(probs);
        self
    }

    /// Adds features of source-domain examples.
    pub fn with_source_features(mut self, features: Tensor) -> Self {
        self.source_features = Some(features);
        self
    }
}

/// Settings of [`rank_sources`].
///
/// | field | default | range |
/// |---|---|---|
/// | `alpha` | 0.05 | (0, 1) |
/// | `n_permutations` | 199 | >= 19 (so that `p` can reach 0.05) |
/// | `block_fraction` | 0.5 | [0, `caution_fraction`] |
/// | `caution_fraction` | 0.9 | [`block_fraction`, 1] |
/// | `cka_caution` | 0.5 | [0, 1] |
/// | `representation` | [`RepresentationMmdConfig::default`] | |
/// | `seed` | 0 | any |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderGateConfig {
    /// Level of the permutation tests.
    pub alpha: f64,
    /// Label permutations for the LogME and LEEP nulls.
    pub n_permutations: usize,
    /// A LogME gain below this fraction of the best candidate's blocks.
    pub block_fraction: f64,
    /// A LogME or LEEP gain below this fraction of the best candidate's is a caution.
    pub caution_fraction: f64,
    /// CKA to the reference features below this is a caution.
    pub cka_caution: f64,
    /// The representation-shift test.
    pub representation: RepresentationMmdConfig,
    /// Seed of the permutations (and of the MMD test).
    pub seed: u64,
}

impl Default for EncoderGateConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            n_permutations: 199,
            block_fraction: 0.5,
            caution_fraction: 0.9,
            cka_caution: 0.5,
            representation: RepresentationMmdConfig::default(),
            seed: 0,
        }
    }
}

impl EncoderGateConfig {
    /// Sets the seed of the permutations and the MMD test.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.representation.mmd.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        check_unit("alpha", self.alpha)?;
        if self.n_permutations < 19 {
            return Err(SafetyError::InvalidArgument {
                name: "n_permutations",
                reason: format!("must be >= 19, got {}", self.n_permutations),
            });
        }
        let ok = 0.0 <= self.block_fraction
            && self.block_fraction <= self.caution_fraction
            && self.caution_fraction <= 1.0;
        if !ok {
            return Err(SafetyError::InvalidArgument {
                name: "block_fraction",
                reason: format!(
                    "need 0 <= block_fraction <= caution_fraction <= 1, got {} and {}",
                    self.block_fraction, self.caution_fraction
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.cka_caution) {
            return Err(SafetyError::InvalidArgument {
                name: "cka_caution",
                reason: format!("must lie in [0, 1], got {}", self.cka_caution),
            });
        }
        Ok(())
    }
}

/// A score with its permutation null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullTest {
    /// The observed score.
    pub score: f64,
    /// Mean of the scores under shuffled labels.
    pub null_mean: f64,
    /// Standard deviation of the null scores.
    pub null_sd: f64,
    /// `score - null_mean`.
    pub gain: f64,
    /// `(1 + #{null >= score}) / (B + 1)`.
    pub p_value: f64,
}

/// The gate's assessment of one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceAssessment {
    /// The candidate's name.
    pub name: String,
    /// 1 = best: by verdict (transfer, then with caution, then blocked), then by LogME score,
    /// then by LEEP.
    pub rank: usize,
    /// The verdict.
    pub verdict: Verdict,
    /// LogME on the target sample.
    pub logme: LogMe,
    /// LogME against its shuffled-label null.
    pub logme_test: NullTest,
    /// LEEP, when source probabilities were given.
    pub leep: Option<Leep>,
    /// LEEP against its shuffled-label null.
    pub leep_test: Option<NullTest>,
    /// Source vs target representation shift, when source features were given.
    pub representation_shift: Option<RepresentationMmd>,
    /// Unbiased linear CKA to the reference features, when given.
    pub cka_to_reference: Option<f64>,
    /// Every statistic with its threshold.
    pub checks: Vec<Check>,
    /// Human-readable reasons, most important first.
    pub reasons: Vec<String>,
}

/// The ranked candidates (best first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRanking {
    /// Candidates by rank.
    pub ranking: Vec<SourceAssessment>,
    /// Target examples.
    pub n: usize,
    /// Target classes.
    pub classes: usize,
    /// The settings used.
    pub config: EncoderGateConfig,
}

impl SourceRanking {
    /// The best candidate whose verdict is not `Block`.
    pub fn recommended(&self) -> Option<&SourceAssessment> {
        self.ranking.iter().find(|a| a.verdict != Verdict::Block)
    }

    /// The assessment of the candidate called `name`.
    pub fn get(&self, name: &str) -> Option<&SourceAssessment> {
        self.ranking.iter().find(|a| a.name == name)
    }
}

/// Ranks candidate sources for a labelled target sample; see the module docs.
///
/// # Shapes
/// each candidate's `features` `[n, d_i]`, `source_probs` `[n, c_s]`, `source_features`
/// `[m, d_i]`; `labels`: `n` classes; `reference` (optional) `[n, d_r]`.
///
/// # Errors
/// [`SafetyError::InvalidArgument`] for no candidates, repeated names or a bad config;
/// [`SafetyError::RowMismatch`], [`SafetyError::TooFewClasses`], NaN/inf features, invalid
/// probabilities, as [`crate::logme_classification`], [`crate::leep`] and
/// [`representation_mmd`].
pub fn rank_sources(
    candidates: &[SourceCandidate],
    labels: &[u32],
    reference: Option<&Tensor>,
    config: &EncoderGateConfig,
) -> Result<SourceRanking> {
    config.validate()?;
    if candidates.is_empty() {
        return Err(SafetyError::InvalidArgument {
            name: "candidates",
            reason: "no candidate sources given".into(),
        });
    }
    for (i, c) in candidates.iter().enumerate() {
        if candidates[..i].iter().any(|o| o.name == c.name) {
            return Err(SafetyError::InvalidArgument {
                name: "candidates",
                reason: format!("the name {:?} is used twice", c.name),
            });
        }
    }
    let n = labels.len();
    let classes = check_labels(labels, n, "labels")?;
    let mut rng = seeded_rng(config.seed);
    let perms: Vec<Vec<u32>> = (0..config.n_permutations)
        .map(|_| {
            permutation(n, &mut rng)
                .iter()
                .map(|&i| labels[i])
                .collect()
        })
        .collect();
    let cka_cfg = CkaConfig::linear(CkaEstimator::Unbiased);
    let reference = reference
        .map(|r| Prepared::new(r, "reference", &cka_cfg))
        .transpose()?;

    let mut raw = Vec::with_capacity(candidates.len());
    for c in candidates {
        raw.push(assess_one(
            c,
            labels,
            classes,
            &perms,
            reference.as_ref(),
            config,
        )?);
    }
    let best_logme_gain = raw
        .iter()
        .map(|a| a.logme_test.gain)
        .fold(f64::NEG_INFINITY, f64::max);
    let best_leep_gain = raw
        .iter()
        .filter_map(|a| a.leep_test.as_ref().map(|t| t.gain))
        .fold(f64::NEG_INFINITY, f64::max);
    let best_name = raw
        .iter()
        .max_by(|a, b| a.logme_test.gain.total_cmp(&b.logme_test.gain))
        .map(|a| a.name.clone())
        .unwrap_or_default();
    for a in &mut raw {
        decide(a, best_logme_gain, best_leep_gain, &best_name, config);
    }
    // Recommended candidates first: a blocked source never outranks one the gate lets through,
    // however high its raw LogME (a shuffled-label fine-tune can have better-separated features
    // than the pretrained encoder and no evidence about the labels; measured on SST-2).
    let order = |v: Verdict| match v {
        Verdict::Transfer => 0,
        Verdict::TransferWithCaution => 1,
        Verdict::Block => 2,
    };
    raw.sort_by(|a, b| {
        order(a.verdict)
            .cmp(&order(b.verdict))
            .then_with(|| b.logme.score.total_cmp(&a.logme.score))
            .then_with(|| {
                let l =
                    |x: &SourceAssessment| x.leep.as_ref().map_or(f64::NEG_INFINITY, |l| l.score);
                l(b).total_cmp(&l(a))
            })
    });
    for (i, a) in raw.iter_mut().enumerate() {
        a.rank = i + 1;
    }
    Ok(SourceRanking {
        ranking: raw,
        n,
        classes,
        config: config.clone(),
    })
}

fn null_test(score: f64, null: &[f64]) -> NullTest {
    let (null_mean, null_sd) = crate::stats::mean_sd(null);
    let k = null.iter().filter(|v| **v >= score).count();
    NullTest {
        score,
        null_mean,
        null_sd,
        gain: score - null_mean,
        p_value: (k + 1) as f64 / (null.len() + 1) as f64,
    }
}

fn assess_one(
    c: &SourceCandidate,
    labels: &[u32],
    classes: usize,
    perms: &[Vec<u32>],
    reference: Option<&Prepared>,
    config: &EncoderGateConfig,
) -> Result<SourceAssessment> {
    let what = format!("features of {}", c.name);
    let basis = LogMeBasis::new(&c.features, &what)?;
    check_labels(labels, basis.n, &what)?;
    let ys: Vec<Vec<f64>> = (0..classes).map(|k| one_hot(labels, k as u32)).collect();
    let logme = basis.evaluate(&ys)?;
    let mut null_cols = Vec::with_capacity(perms.len() * classes);
    for p in perms {
        for k in 0..classes {
            null_cols.push(one_hot(p, k as u32));
        }
    }
    let ev = basis.column_evidences(&null_cols)?;
    let null: Vec<f64> = ev
        .chunks(classes)
        .map(|ch| ch.iter().sum::<f64>() / classes as f64)
        .collect();
    let logme_test = null_test(logme.score, &null);

    let (leep, leep_test) = match &c.source_probs {
        Some(p) => {
            let (rows, _) = prepare(p, labels)?;
            let l = leep_rows(&rows, labels, classes);
            let null: Vec<f64> = perms
                .iter()
                .map(|pl| {
                    let r = leep_rows(&rows, pl, classes);
                    r.score
                })
                .collect();
            let mut t = null_test(l.score, &null);
            // the gain that matters is over the exact no-information score
            t.gain = l.gain;
            (Some(l), Some(t))
        }
        None => (None, None),
    };
    let representation_shift = c
        .source_features
        .as_ref()
        .map(|s| {
            let mut rc = config.representation.clone();
            rc.mmd.seed = config.seed;
            representation_mmd(s, &c.features, &rc)
        })
        .transpose()?;
    let cka_to_reference = match reference {
        Some(r) => {
            let p = Prepared::new(
                &c.features,
                &what,
                &CkaConfig::linear(CkaEstimator::Unbiased),
            )?;
            Some(p.cka(r)?)
        }
        None => None,
    };
    Ok(SourceAssessment {
        name: c.name.clone(),
        rank: 0,
        verdict: Verdict::Transfer,
        logme,
        logme_test,
        leep,
        leep_test,
        representation_shift,
        cka_to_reference,
        checks: Vec::new(),
        reasons: Vec::new(),
    })
}

fn check(
    name: &str,
    value: f64,
    threshold: f64,
    rule: &str,
    passed: bool,
    c: Consequence,
) -> Check {
    Check {
        name: name.into(),
        value,
        threshold,
        rule: rule.into(),
        passed,
        consequence: c,
    }
}

fn decide(
    a: &mut SourceAssessment,
    best_logme_gain: f64,
    best_leep_gain: f64,
    best_name: &str,
    cfg: &EncoderGateConfig,
) {
    let mut blocks = Vec::new();
    let mut cautions = Vec::new();
    let lt = &a.logme_test;
    let ok = lt.p_value <= cfg.alpha;
    a.checks.push(check(
        "logme_p_value",
        lt.p_value,
        cfg.alpha,
        "value <= threshold",
        ok,
        Consequence::Block,
    ));
    if !ok {
        blocks.push(format!(
            "LogME {:.4} is not above its shuffled-label null (mean {:.4}, p = {:.3}): the features carry no evidence about the target labels",
            lt.score, lt.null_mean, lt.p_value
        ));
    }
    if best_logme_gain > 0.0 && a.name != best_name {
        let frac = lt.gain / best_logme_gain;
        let block_ok = frac >= cfg.block_fraction;
        let caution_ok = frac >= cfg.caution_fraction;
        a.checks.push(check(
            "logme_gain_fraction",
            frac,
            cfg.block_fraction,
            "value >= threshold",
            block_ok,
            Consequence::Block,
        ));
        a.checks.push(check(
            "logme_gain_fraction",
            frac,
            cfg.caution_fraction,
            "value >= threshold",
            caution_ok,
            Consequence::Caution,
        ));
        if !block_ok {
            blocks.push(format!(
                "LogME gain over the null {:.4} is {:.0}% of the best candidate {best_name:?}'s {:.4}: dominated by a better source",
                lt.gain, 100.0 * frac, best_logme_gain
            ));
        } else if !caution_ok {
            cautions.push(format!(
                "LogME gain {:.4} is {:.0}% of the best candidate {best_name:?}'s {:.4}",
                lt.gain,
                100.0 * frac,
                best_logme_gain
            ));
        }
    }
    if let (Some(l), Some(t)) = (&a.leep, &a.leep_test) {
        let ok = t.p_value <= cfg.alpha;
        a.checks.push(check(
            "leep_p_value",
            t.p_value,
            cfg.alpha,
            "value <= threshold",
            ok,
            Consequence::Block,
        ));
        if !ok {
            blocks.push(format!(
                "LEEP {:.4} is not above its shuffled-label null (p = {:.3}; gain {:.4} nats over the no-information score {:.4}): the source head's predictions carry no information about the target labels",
                l.score, t.p_value, l.gain, l.null_score
            ));
        }
        if best_leep_gain > 0.0 {
            let frac = l.gain / best_leep_gain;
            let ok = frac >= cfg.caution_fraction;
            a.checks.push(check(
                "leep_gain_fraction",
                frac,
                cfg.caution_fraction,
                "value >= threshold",
                ok,
                Consequence::Caution,
            ));
            if !ok {
                cautions.push(format!(
                    "LEEP gain {:.4} nats is {:.0}% of the best candidate's {:.4}",
                    l.gain,
                    100.0 * frac,
                    best_leep_gain
                ));
            }
        }
    }
    if let Some(r) = &a.representation_shift {
        let ok = r.mmd.p_value > cfg.alpha;
        a.checks.push(check(
            "representation_mmd_p_value",
            r.mmd.p_value,
            cfg.alpha,
            "value > threshold",
            ok,
            Consequence::Caution,
        ));
        if !ok {
            cautions.push(format!(
                "target and source examples differ in this encoder's representation space (MMD^2 {:.4} on {} dims, p = {:.3})",
                r.mmd.mmd2, r.dims, r.mmd.p_value
            ));
        }
    }
    if let Some(c) = a.cka_to_reference {
        let ok = c >= cfg.cka_caution;
        a.checks.push(check(
            "cka_to_reference",
            c,
            cfg.cka_caution,
            "value >= threshold",
            ok,
            Consequence::Caution,
        ));
        if !ok {
            cautions.push(format!(
                "its representation of the target sample is far from the reference's (linear CKA {c:.3})"
            ));
        }
    }
    a.verdict = if !blocks.is_empty() {
        Verdict::Block
    } else if !cautions.is_empty() {
        Verdict::TransferWithCaution
    } else {
        Verdict::Transfer
    };
    if a.verdict == Verdict::Transfer {
        a.reasons.push(format!(
            "LogME {:.4} is {:.4} above its shuffled-label null (p = {:.3})",
            lt.score, lt.gain, lt.p_value
        ));
    }
    a.reasons.splice(0..0, blocks.into_iter().chain(cautions));
}
