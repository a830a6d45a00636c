//! The harmful-source suite shared by `examples/harmful_suite.rs` (which writes
//! docs/safety-harmful-suite.md) and `tests/harmful_suite.rs` (which asserts it).
//!
//! Every trial: a source domain, a few-shot target training set (`N_TRAIN` rows) and a held-out
//! target test set. The gate sees the source and the target training rows only. The truth is
//! measured on the held-out test rows: transferred model vs target-only model, same score.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use forge_data::{datasets_dir, load_split, Budget, DomainSplit, TabularDataset};
use forge_linalg::rng::{permutation, randn, seeded_rng};
use forge_safety::{
    gate_transfer, FitData, GateConfig, Learner, LinearTransfer, LogisticTransfer, Score,
    ValidateConfig, Verdict,
};
use serde::Serialize;

/// Few-shot target training rows per trial.
pub const N_TRAIN: usize = 80;
/// Target-training draws per case.
pub const SEEDS: [u64; 3] = [1, 2, 3];
/// Pull of the regularized transfer towards the source weights.
pub const TRANSFER_LAM: f64 = 1000.0;

/// What the trial's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// A shipped domain split (real source -> real target).
    Benign,
    /// A deliberately harmful source.
    Harmful,
}

/// Practical-significance margin of the held-out truth, in score units (R^2 or Brier score).
pub const MARGIN: f64 = 0.01;

/// Held-out truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Truth {
    /// Transfer scores more than `MARGIN` below target-only on the held-out target test set.
    Hurts,
    /// The two scores are within `MARGIN` of each other.
    Negligible,
    /// Transfer scores more than `MARGIN` above target-only.
    Helps,
}

/// One trial's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub case: String,
    pub kind: Kind,
    pub target: String,
    pub seed: u64,
    pub n_source: usize,
    pub n_test: usize,
    pub score: Score,
    pub test_transfer: f64,
    pub test_target_only: f64,
    pub delta: f64,
    pub truth: Truth,
    pub verdict: Verdict,
    pub cv_mean_diff: f64,
    pub cv_p_gain: f64,
    pub mmd2: f64,
    pub pad: f64,
    pub shift_detected: bool,
    pub reason: String,
}

/// Builds a trial's source from the target's split and the seed.
type MakeSource = Box<dyn Fn(&DomainSplit, u64) -> Result<TabularDataset>>;

struct Case {
    name: String,
    kind: Kind,
    target_split: &'static str,
    make_source: MakeSource,
}

fn with_xy(d: &TabularDataset, x: Tensor, y: Tensor) -> Result<TabularDataset> {
    let names = (0..x.dim(1)?).map(|i| format!("f{i}")).collect();
    Ok(TabularDataset::new(
        d.name.clone(),
        x,
        y,
        names,
        d.target_name.clone(),
        d.task,
    )?)
}

fn take(t: &Tensor, idx: &[usize], dim: usize) -> Result<Tensor> {
    let ids = Tensor::from_vec(
        idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        idx.len(),
        t.device(),
    )?;
    Ok(t.index_select(&ids, dim)?)
}

fn sd(y: &Tensor) -> Result<f64> {
    let v: Vec<f64> = y.to_vec1()?;
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Ok((v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64).sqrt())
}

fn cases() -> Vec<Case> {
    let benign = |name: &'static str| Case {
        name: format!("benign: {name}"),
        kind: Kind::Benign,
        target_split: name,
        make_source: Box::new(|s: &DomainSplit, _| Ok(s.source.clone())),
    };
    let mut v: Vec<Case> = [
        "california_housing",
        "wine_quality",
        "wine_quality_good",
        "titanic",
        "breast_cancer",
        "diabetes",
    ]
    .into_iter()
    .map(benign)
    .collect();
    let harmful = |name: &str, target: &'static str, f: MakeSource| Case {
        name: name.to_string(),
        kind: Kind::Harmful,
        target_split: target,
        make_source: f,
    };
    v.push(harmful(
        "label-permuted source (diabetes younger, y shuffled)",
        "diabetes",
        Box::new(|s, seed| {
            let p = permutation(s.source.n_samples(), &mut seeded_rng(seed + 100));
            with_xy(&s.source, s.source.x.clone(), take(&s.source.y, &p, 0)?)
        }),
    ));
    v.push(harmful(
        "feature-permuted source (diabetes younger, columns shuffled)",
        "diabetes",
        Box::new(|s, seed| {
            let p = permutation(s.source.n_features(), &mut seeded_rng(seed + 200));
            with_xy(&s.source, take(&s.source.x, &p, 1)?, s.source.y.clone())
        }),
    ));
    v.push(harmful(
        "another dataset, matched dimension (wine red 10 features -> diabetes)",
        "diabetes",
        Box::new(|_, _| {
            let wine = load_split("wine_quality", &datasets_dir())?.standardized()?;
            with_xy(
                &wine.source,
                wine.source.x.narrow(1, 0, 10)?,
                wine.source.y.clone(),
            )
        }),
    ));
    v.push(harmful(
        "sign-flipped relation (housing north, y -> -y)",
        "california_housing",
        Box::new(|s, _| with_xy(&s.source, s.source.x.clone(), s.source.y.neg()?)),
    ));
    v.push(harmful(
        "covariate + concept shift (housing north, x + 1 sd, y + sd(y) (x1 - x0))",
        "california_housing",
        Box::new(|s, _| {
            let x = &s.source.x;
            let concept =
                ((x.narrow(1, 1, 1)? - x.narrow(1, 0, 1)?)?.squeeze(1)? * sd(&s.source.y)?)?;
            with_xy(&s.source, (x + 1.0)?, (&s.source.y + concept)?)
        }),
    ));
    v.push(harmful(
        "tiny noisy source (12 rows of wine red, y + N(0, (3 sd)^2))",
        "wine_quality",
        Box::new(|s, seed| {
            let mut rng = seeded_rng(seed + 300);
            let idx = permutation(s.source.n_samples(), &mut rng);
            let x = take(&s.source.x, &idx[..12], 0)?;
            let y = take(&s.source.y, &idx[..12], 0)?;
            let noise =
                (randn(&[12], DType::F64, &Device::Cpu, &mut rng)? * (3.0 * sd(&s.source.y)?))?;
            with_xy(&s.source, x, (y + noise)?)
        }),
    ));
    v.push(harmful(
        "label-flipped classes (breast cancer small radius, y -> 1 - y)",
        "breast_cancer",
        Box::new(|s, _| with_xy(&s.source, s.source.x.clone(), (1.0 - &s.source.y)?)),
    ));
    v.push(harmful(
        "label-permuted classes (titanic Southampton, y shuffled)",
        "titanic",
        Box::new(|s, seed| {
            let p = permutation(s.source.n_samples(), &mut seeded_rng(seed + 400));
            with_xy(&s.source, s.source.x.clone(), take(&s.source.y, &p, 0)?)
        }),
    ));
    v
}

/// The gate configuration of the suite (defaults, seeded).
pub fn gate_config(score: Score, seed: u64) -> GateConfig {
    let mut g = GateConfig::default().with_seed(seed);
    g.validation = ValidateConfig {
        seed,
        folds: 10,
        ..ValidateConfig::with_score(score)
    };
    g
}

fn trial(case: &Case, split: &DomainSplit, seed: u64) -> Result<Row> {
    let fs = split.few_shot(0.5, Budget::Count(N_TRAIN), seed)?;
    let source = (case.make_source)(split, seed)?;
    let classification = split.target.task.is_classification();
    // Held-out truth: R^2 (regression) or negative Brier score (classification); the CV inside the
    // gate uses -MSE for regression (same sign as the R^2 difference on a common test set, and
    // stable on small folds, unlike per-fold R^2).
    let (score, cv_score, lin, logi) = (
        if classification {
            Score::NegBrier
        } else {
            Score::R2
        },
        if classification {
            Score::NegBrier
        } else {
            Score::NegMse
        },
        LinearTransfer {
            transfer_lam: TRANSFER_LAM,
            ..Default::default()
        },
        LogisticTransfer {
            transfer_lam: TRANSFER_LAM,
            ..Default::default()
        },
    );
    let (transfer, target_only): (Box<dyn Learner + '_>, Box<dyn Learner + '_>) = if classification
    {
        (Box::new(logi.transfer()), Box::new(logi.target_only()))
    } else {
        (Box::new(lin.transfer()), Box::new(lin.target_only()))
    };
    let cfg = gate_config(cv_score, seed);
    let (tr, te) = (&fs.target_train, &fs.target_test);
    let decision = gate_transfer(
        &source.x,
        &source.y,
        &tr.x,
        &tr.y,
        transfer.as_ref(),
        target_only.as_ref(),
        &cfg,
    )?;
    // Truth on the held-out target test rows.
    let data = FitData {
        source_x: &source.x,
        source_y: &source.y,
        target_x: &tr.x,
        target_y: &tr.y,
    };
    let s_t = score.evaluate(
        &te.y,
        &transfer
            .fit_predict(&data, &te.x)
            .map_err(anyhow::Error::from_boxed)?,
    )?;
    let s_b = score.evaluate(
        &te.y,
        &target_only
            .fit_predict(&data, &te.x)
            .map_err(anyhow::Error::from_boxed)?,
    )?;
    let delta = s_t - s_b;
    let v = decision
        .validation
        .as_ref()
        .expect("gate_transfer validates");
    Ok(Row {
        case: case.name.clone(),
        kind: case.kind,
        target: split.name.clone(),
        seed,
        n_source: source.n_samples(),
        n_test: te.n_samples(),
        score,
        test_transfer: s_t,
        test_target_only: s_b,
        delta,
        truth: if delta < -MARGIN {
            Truth::Hurts
        } else if delta > MARGIN {
            Truth::Helps
        } else {
            Truth::Negligible
        },
        verdict: decision.verdict,
        cv_mean_diff: v.mean_diff,
        cv_p_gain: v.p_gain,
        mmd2: decision.mmd.mmd2,
        pad: decision.pad.pad,
        shift_detected: decision.shift_detected,
        reason: decision.reasons.first().cloned().unwrap_or_default(),
    })
}

/// Runs every case for every seed.
pub fn run() -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for case in cases() {
        let split = load_split(case.target_split, &datasets_dir())?.standardized()?;
        for seed in SEEDS {
            rows.push(trial(&case, &split, seed)?);
        }
    }
    Ok(rows)
}

/// Confusion counts `[truth][verdict]`: truth 0 = Hurts, 1 = Negligible, 2 = Helps; verdict
/// 0 = Block, 1 = TransferWithCaution, 2 = Transfer.
pub fn confusion(rows: &[Row]) -> [[usize; 3]; 3] {
    let mut c = [[0usize; 3]; 3];
    for r in rows {
        let t = match r.truth {
            Truth::Hurts => 0,
            Truth::Negligible => 1,
            Truth::Helps => 2,
        };
        let v = match r.verdict {
            Verdict::Block => 0,
            Verdict::TransferWithCaution => 1,
            Verdict::Transfer => 2,
        };
        c[t][v] += 1;
    }
    c
}

/// The confusion table as Markdown.
pub fn confusion_markdown(rows: &[Row]) -> String {
    let c = confusion(rows);
    let mut s = String::from(
        "| held-out truth \\ gate verdict | BLOCK | TRANSFER_WITH_CAUTION | TRANSFER |\n|---|---|---|---|\n",
    );
    let labels = [
        format!("transfer hurts (delta < -{MARGIN})"),
        format!("negligible (abs(delta) <= {MARGIN})"),
        format!("transfer helps (delta > {MARGIN})"),
    ];
    for (label, row) in labels.iter().zip(c) {
        s += &format!("| {label} | {} | {} | {} |\n", row[0], row[1], row[2]);
    }
    s
}

/// The per-trial table as Markdown.
pub fn rows_markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| case | seed | score | test transfer | test target-only | delta | truth | verdict | CV mean diff | CV p(gain) | MMD^2 | PAD |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:?} | {:.4} | {:.4} | {:+.4} | {:?} | {:?} | {:+.4} | {:.3} | {:.3} | {:.3} |\n",
            r.case, r.seed, r.score, r.test_transfer, r.test_target_only, r.delta, r.truth, r.verdict, r.cv_mean_diff, r.cv_p_gain, r.mmd2, r.pad
        );
    }
    s
}
