//! Learning curve of every classical transfer method against target-only and source-only
//! baselines on Forge's real domain splits.
//!
//! For each split (features standardised on the source only), 5 seeds and target TRAINING
//! budgets of 1%, 5%, 10% and 25%: the target is split 70/30 into train/test, the budget is a
//! seeded subsample of the train part, every hyperparameter (lam, tau^2, rank, epochs, blend) is
//! chosen by 5-fold cross-validation on the target training rows only (covariance-shift
//! transfer chooses its blend on held-out target training rows), and the score is R^2
//! (regression) or accuracy (classification) on the held-out target test rows.
//!
//! Run (writes docs/classical-learning-curve.md atomically):
//! `cargo run --release -p forge-classical --example learning_curve`
//! Options: `--quick` (1 seed, budgets 5% and 25%), `--out <path>`.

use anyhow::{Context, Result};
use candle_core::Tensor;
use forge_classical::cv::{self, CvParams};
use forge_classical::*;
use forge_data::{datasets_dir, load_split, Budget, DomainSplit, TabularDataset, Task};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Candidate penalties, strongest first: CV ties (e.g. with 1-row folds) go to the stronger penalty.
const LAMS: [f64; 8] = [1e4, 1e3, 100.0, 10.0, 1.0, 0.1, 1e-2, 1e-3];
const SPLITS: [&str; 6] = [
    "california_housing",
    "wine_quality",
    "wine_quality_good",
    "titanic",
    "breast_cancer",
    "diabetes",
];
const METHODS: [&str; 9] = [
    "source-only",
    "target-only",
    "regularized transfer",
    "Bayesian transfer",
    "covariance-shift transfer",
    "moment mapping (stat_mapping)",
    "low-rank (vector) adapter",
    "SGD fine-tune (warm start)",
    "target-only SGD",
];

/// What the tables say and why (the run is seeded, so the numbers are reproducible).
const FINDINGS: &str = r#"
## What the data says

- **Few-shot (1%) regime: transfer beats target-only on 5 of 6 splits.** Wine red -> white
  R² 0.184 vs 0.083 (the scikit-learn check found 0.23 vs 0.08), housing north -> south 0.458
  vs 0.447 (sklearn: 0.55 vs 0.53; here 1% of the 70% training part is n ≈ 73 rows and one
  unlucky seed gives ±0.18), Titanic 0.735 vs 0.635, breast cancer 0.831 vs 0.767, diabetes
  0.284 vs -0.627. The exception is wine "good" (binary), where 78% of the target is class 0:
  with n ≈ 34 (about 7 positives) every method sits near the majority rate, and the CV choice
  of lam is noisy enough that regularized transfer falls below it (0.765 ± 0.037 vs 0.783). Methods that restrict the update are the most
  stable with few rows: on housing at 1% the rank-restricted vector adapter (0.517 ± 0.055) and
  SGD fine-tuning with CV over epochs (0.526 ± 0.020) have a third to a ninth of the
  closed-form methods' spread.
- **Level by 10%.** With n ≈ 343-727 target rows (wine, housing) regularized transfer equals
  target-only within 0.003 R²/accuracy: CV then chooses a small lam because the target
  optimum differs from the source one (housing source-only 0.414 vs target-only 0.602) and
  there is enough data to estimate it. This matches the scikit-learn orientation.
- **Where the source model already transfers, it is hard to beat.** Breast cancer (split by
  radius) keeps the same decision rule in both halves: source-only is 0.955, and target fits on
  ≤ 20 rows only add variance; regularized transfer climbs towards it (0.831 -> 0.941) as n grows.
- **Bayesian transfer = regularized transfer**, as the theory says (posterior mean with
  lam = sigma²/tau²; the tau² grid is sigma²/lam), so their rows coincide.
- **Moment mapping is a zero-label method and fails when the shift carries the label.** On
  breast cancer the target is "large radius", i.e. mostly malignant; mapping target features onto
  the source distribution erases exactly that signal (accuracy 0.36-0.39). With n = 2 target
  rows (diabetes 1%) the per-feature deviations are estimated from two points and the
  mapping explodes (R² -39). It only helps when the shift is a nuisance rescaling of features.
- **Covariance-shift transfer** is the best transfer classifier at 1% on breast cancer (0.932)
  and Titanic (0.776): its blend can lean on the importance-weighted source fit, but its
  internal 30% hold-out wastes rows when n ≈ 8 (diabetes 5%: -0.70 ± 2.46).
- **Tiny regression targets are fragile for closed forms chosen by CV.** Diabetes at 5%
  (n ≈ 8) the lam chosen by CV on 8 rows is unreliable and a single bad seed drags the
  regularized fit to -0.022 ± 0.984; warm-started SGD, whose CV can pick 0 epochs (= the source model), is
  the most robust there (0.440 ± 0.050).
- Plain target-only SGD (lr 0.01, at most 50 epochs) under-fits wine quality (R² < 0): the
  intercept starts at 0 while quality ≈ 5.9 and few rows mean few steps; this is why the
  closed-form and Newton solvers are the target-only baselines.
"#;

/// Per (method, budget): the scores over seeds and how many runs needed a fallback.
#[derive(Default, Clone)]
struct Cell {
    scores: Vec<f64>,
    fallbacks: usize,
}

fn cv_params(y: &Tensor, task: Task, seed: u64) -> CvParams {
    let n = y.dims()[0];
    CvParams {
        k: 5.min(n.max(2)),
        seed,
        stratified: task.is_classification(),
    }
}

/// Validation score for CV: -MSE (regression) or -log-loss (binary), higher is better.
fn val_score_lin(m: &LinearModel, xv: &Tensor, yv: &Tensor) -> forge_classical::Result<f64> {
    Ok(-metrics::mse(yv, &m.predict(xv)?)?)
}
fn val_score_log(m: &LogisticModel, xv: &Tensor, yv: &Tensor) -> forge_classical::Result<f64> {
    Ok(-metrics::log_loss(yv, &m.predict_proba(xv)?)?)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

fn constant(tr: &TabularDataset, d: usize, binary: bool) -> Result<LinearModel> {
    let y = tr.y_vec()?;
    let m = y.iter().sum::<f64>() / y.len() as f64;
    // For a classifier, a constant logit with the majority class's sign.
    let b = if binary {
        if m >= 0.5 {
            1.0
        } else {
            -1.0
        }
    } else {
        m
    };
    Ok(LinearModel::from_vec(vec![0.0; d], b)?)
}

struct Ctx<'a> {
    src: &'a TabularDataset,
    tr: &'a TabularDataset,
    te: &'a TabularDataset,
    seed: u64,
}

fn score_reg(m: &LinearModel, te: &TabularDataset) -> Result<f64> {
    Ok(metrics::r2(&te.y, &m.predict(&te.x)?)?)
}
fn score_clf(m: &LogisticModel, te: &TabularDataset) -> Result<f64> {
    Ok(metrics::accuracy(&te.y, &m.predict(&te.x)?)?)
}

/// One regression run: scores of every method (None = fallback used, with the fallback's score).
fn run_regression(c: &Ctx, source: &LinearModel, sigma2: f64) -> Result<Vec<(f64, bool)>> {
    let (x, y) = (&c.tr.x, &c.tr.y);
    let d = c.tr.n_features();
    let n = c.tr.n_samples();
    let cvp = cv_params(y, Task::Regression, c.seed);
    let fallback = |e: &dyn std::fmt::Debug| {
        tracing_like(&format!("fallback: {e:?}"));
    };
    let mut out = Vec::new();
    out.push((score_reg(source, c.te)?, false));
    // CV helper; None when the budget is too small for CV.
    let pick = |cands: &[f64],
                f: &dyn Fn(&Tensor, &Tensor, f64) -> forge_classical::Result<LinearModel>|
     -> Option<f64> {
        if n < 2 {
            return None;
        }
        cv::select(x, y, cands, &cvp, |xt, yt, xv, yv, &l| {
            val_score_lin(&f(xt, yt, l)?, xv, yv)
        })
        .ok()
        .map(|c| c.best)
    };
    // target-only ridge
    let lam = pick(&LAMS, &|xt, yt, l| ridge(xt, yt, l));
    let m = ridge(x, y, lam.unwrap_or(1.0));
    out.push(match m {
        Ok(m) => (score_reg(&m, c.te)?, lam.is_none()),
        Err(e) => {
            fallback(&e);
            (score_reg(&constant(c.tr, d, false)?, c.te)?, true)
        }
    });
    // regularized transfer
    let lam = pick(&LAMS, &|xt, yt, l| {
        regularized_transfer_linear(xt, yt, source, l)
    });
    let m = regularized_transfer_linear(x, y, source, lam.unwrap_or(1.0))?;
    out.push((score_reg(&m, c.te)?, lam.is_none()));
    // Bayesian transfer: sigma^2 from the source fit, tau^2 by CV.
    let taus: Vec<f64> = LAMS.iter().map(|l| sigma2 / l).collect();
    let tau2 = pick(&taus, &|xt, yt, t| {
        Ok(bayesian_transfer_linear(xt, yt, source, sigma2, t)?.mean)
    });
    let m = bayesian_transfer_linear(x, y, source, sigma2, tau2.unwrap_or(sigma2))?.mean;
    out.push((score_reg(&m, c.te)?, tau2.is_none()));
    // covariance shift
    let p = CovShiftParams::default().seed(c.seed).lams(LAMS.to_vec());
    out.push(
        match covariance_shift_transfer(&c.src.x, &c.src.y, x, y, &p) {
            Ok(f) => (score_reg(&f.model, c.te)?, false),
            Err(e) => {
                fallback(&e);
                (score_reg(source, c.te)?, true)
            }
        },
    );
    // moment mapping (target training features only, no labels)
    let m = stat_mapping(source, &c.src.x, x)?;
    out.push((score_reg(&m, c.te)?, n < 2));
    // low-rank vector adapter: rank and lam by CV
    let mut cands = Vec::new();
    for r in [1usize, 2, 4, 8].into_iter().filter(|&r| r <= d) {
        for l in [1e3, 100.0, 10.0, 1.0, 0.1] {
            cands.push((r, l));
        }
    }
    let ch = if n >= 2 {
        cv::select(x, y, &cands, &cvp, |xt, yt, xv, yv, &(r, l)| {
            let a = fit_low_rank_adapter(xt, yt, source, &AdapterParams::default().rank(r).lam(l))?;
            val_score_lin(&a.model, xv, yv)
        })
        .ok()
        .map(|c| c.best)
    } else {
        None
    };
    let (r, l) = ch.unwrap_or((1, 10.0));
    let a = fit_low_rank_adapter(x, y, source, &AdapterParams::default().rank(r).lam(l))?;
    out.push((score_reg(&a.model, c.te)?, ch.is_none()));
    // SGD fine-tune from the source: epochs by CV
    let epochs = [0usize, 1, 5, 20, 50];
    let sgd = |xt: &Tensor, yt: &Tensor, e: usize, warm: bool| {
        let mut p = SgdParams::default()
            .lr(0.01)
            .batch_size(16)
            .epochs(e)
            .seed(c.seed);
        if warm {
            p = p.warm_start(source.clone());
        }
        fit_linear_sgd(xt, yt, &p).map(|r| r.0)
    };
    let pick_e = |warm: bool| -> Option<usize> {
        if n < 2 {
            return None;
        }
        cv::select(x, y, &epochs, &cvp, |xt, yt, xv, yv, &e| {
            val_score_lin(&sgd(xt, yt, e, warm)?, xv, yv)
        })
        .ok()
        .map(|c| c.best)
    };
    let e = pick_e(true);
    out.push((
        score_reg(&sgd(x, y, e.unwrap_or(5), true)?, c.te)?,
        e.is_none(),
    ));
    let e = pick_e(false);
    out.push((
        score_reg(&sgd(x, y, e.unwrap_or(20), false)?, c.te)?,
        e.is_none(),
    ));
    Ok(out)
}

fn run_binary(c: &Ctx, source: &LogisticModel) -> Result<Vec<(f64, bool)>> {
    let (x, y) = (&c.tr.x, &c.tr.y);
    let d = c.tr.n_features();
    let n = c.tr.n_samples();
    let cvp = cv_params(y, Task::Binary, c.seed);
    let yv = c.tr.y_vec()?;
    let both = yv.contains(&1.0) && yv.contains(&0.0);
    let const_model = LogisticModel::from(constant(c.tr, d, true)?);
    let mut out = Vec::new();
    out.push((score_clf(source, c.te)?, false));
    let pick = |cands: &[f64],
                f: &dyn Fn(&Tensor, &Tensor, f64) -> forge_classical::Result<LogisticModel>|
     -> Option<f64> {
        if n < 2 || !both {
            return None;
        }
        cv::select(x, y, cands, &cvp, |xt, yt, xv, yv, &l| {
            val_score_log(&f(xt, yt, l)?, xv, yv)
        })
        .ok()
        .map(|c| c.best)
    };
    // A fit that cannot exist (a single class: no finite intercept) falls back to `fb`.
    let or_fb = |r: forge_classical::Result<LogisticModel>,
                 fb: &LogisticModel,
                 cvd: bool|
     -> Result<(f64, bool)> {
        Ok(match r {
            Ok(m) => (score_clf(&m, c.te)?, !cvd),
            Err(_) => (score_clf(fb, c.te)?, true),
        })
    };
    let lam = pick(&LAMS, &|xt, yt, l| fit_logistic(xt, yt, l));
    out.push(or_fb(
        fit_logistic(x, y, lam.unwrap_or(1.0)),
        &const_model,
        lam.is_some(),
    )?);
    let lam = pick(&LAMS, &|xt, yt, l| {
        regularized_transfer_logistic(xt, yt, source, l)
    });
    out.push(or_fb(
        regularized_transfer_logistic(x, y, source, lam.unwrap_or(1.0)),
        source,
        lam.is_some(),
    )?);
    let taus: Vec<f64> = LAMS.iter().map(|l| 1.0 / l).collect();
    let tau2 = pick(&taus, &|xt, yt, t| {
        Ok(bayesian_transfer_logistic(xt, yt, source, t)?.map)
    });
    let post = bayesian_transfer_logistic(x, y, source, tau2.unwrap_or(1.0));
    out.push(match post {
        Ok(p) => {
            let prob = p.predict_proba(&c.te.x)?;
            let lab: Vec<f64> = prob
                .to_vec1::<f64>()?
                .iter()
                .map(|&q| if q >= 0.5 { 1.0 } else { 0.0 })
                .collect();
            let lab = Tensor::from_vec(lab, c.te.n_samples(), &candle_core::Device::Cpu)?;
            (metrics::accuracy(&c.te.y, &lab)?, tau2.is_none())
        }
        Err(_) => (score_clf(source, c.te)?, true),
    });
    let p = CovShiftParams::default().seed(c.seed).lams(LAMS.to_vec());
    out.push(
        match covariance_shift_transfer_logistic(&c.src.x, &c.src.y, x, y, &p) {
            Ok(f) => (score_clf(&f.model, c.te)?, false),
            Err(_) => (score_clf(source, c.te)?, true),
        },
    );
    let m = LogisticModel::from(stat_mapping(&source.linear_part(), &c.src.x, x)?);
    out.push((score_clf(&m, c.te)?, n < 2));
    let mut cands = Vec::new();
    for r in [1usize, 2, 4, 8].into_iter().filter(|&r| r <= d) {
        for l in [1e3, 100.0, 10.0, 1.0, 0.1] {
            cands.push((r, l));
        }
    }
    let ch = if n >= 2 && both {
        cv::select(x, y, &cands, &cvp, |xt, yt, xv, yv, &(r, l)| {
            let a = fit_low_rank_adapter(xt, yt, source, &AdapterParams::default().rank(r).lam(l))?;
            val_score_log(&a.model, xv, yv)
        })
        .ok()
        .map(|c| c.best)
    } else {
        None
    };
    let (r, l) = ch.unwrap_or((1, 10.0));
    out.push(or_fb(
        fit_low_rank_adapter(x, y, source, &AdapterParams::default().rank(r).lam(l))
            .map(|a| a.model),
        source,
        ch.is_some(),
    )?);
    let epochs = [0usize, 1, 5, 20, 50];
    let sgd = |xt: &Tensor, yt: &Tensor, e: usize, warm: bool| {
        let mut p = SgdParams::default()
            .lr(0.05)
            .batch_size(16)
            .epochs(e)
            .seed(c.seed);
        if warm {
            p = p.warm_start(source.linear_part());
        }
        fit_logistic_sgd(xt, yt, &p).map(|r| r.0)
    };
    for warm in [true, false] {
        let e = if n >= 2 {
            cv::select(x, y, &epochs, &cvp, |xt, yt, xv, yv, &e| {
                val_score_log(&sgd(xt, yt, e, warm)?, xv, yv)
            })
            .ok()
            .map(|c| c.best)
        } else {
            None
        };
        out.push((
            score_clf(&sgd(x, y, e.unwrap_or(5), warm)?, c.te)?,
            e.is_none(),
        ));
    }
    Ok(out)
}

fn tracing_like(msg: &str) {
    if std::env::var_os("FORGE_VERBOSE").is_some() {
        eprintln!("{msg}");
    }
}

/// The source model: lam by 5-fold CV on the SOURCE data; also the residual variance.
fn source_linear(src: &TabularDataset) -> Result<(LinearModel, f64, f64)> {
    let cvp = CvParams {
        k: 5,
        seed: 0,
        stratified: false,
    };
    let lam = cv::select(&src.x, &src.y, &LAMS, &cvp, |xt, yt, xv, yv, &l| {
        val_score_lin(&ridge(xt, yt, l)?, xv, yv)
    })?
    .best;
    let m = ridge(&src.x, &src.y, lam)?;
    let sigma2 = metrics::mse(&src.y, &m.predict(&src.x)?)?;
    Ok((m, lam, sigma2))
}

fn source_logistic(src: &TabularDataset) -> Result<(LogisticModel, f64)> {
    let cvp = CvParams {
        k: 5,
        seed: 0,
        stratified: true,
    };
    let lam = cv::select(&src.x, &src.y, &LAMS, &cvp, |xt, yt, xv, yv, &l| {
        val_score_log(&fit_logistic(xt, yt, l)?, xv, yv)
    })?
    .best;
    Ok((fit_logistic(&src.x, &src.y, lam)?, lam))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR"))?.join("../..");
    let out_path = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).context("--out needs a path")?),
        None => root.join("docs/classical-learning-curve.md"),
    };
    let seeds: Vec<u64> = if quick { vec![0] } else { (0..5).collect() };
    let budgets: Vec<f64> = if quick {
        vec![0.05, 0.25]
    } else {
        vec![0.01, 0.05, 0.10, 0.25]
    };
    let t0 = Instant::now();
    let dir = datasets_dir();
    let mut doc = String::new();
    let mut summary = String::new();
    for name in SPLITS {
        let split: DomainSplit = load_split(name, &dir)?.standardized()?;
        let task = split.target.task;
        let binary = matches!(task, Task::Binary);
        let (lin, log) = if binary {
            let (m, lam) = source_logistic(&split.source)?;
            (None, Some((m, lam)))
        } else {
            let (m, lam, s2) = source_linear(&split.source)?;
            (Some((m, lam, s2)), None)
        };
        let mut cells = vec![vec![Cell::default(); budgets.len()]; METHODS.len()];
        let mut n_train = vec![Vec::new(); budgets.len()];
        for (bi, &b) in budgets.iter().enumerate() {
            for &seed in &seeds {
                let fs = split.few_shot(0.3, Budget::Fraction(b), seed)?;
                n_train[bi].push(fs.target_train.n_samples());
                let ctx = Ctx {
                    src: &fs.source,
                    tr: &fs.target_train,
                    te: &fs.target_test,
                    seed,
                };
                let res = match (&lin, &log) {
                    (Some((m, _, s2)), _) => run_regression(&ctx, m, *s2)?,
                    (_, Some((m, _))) => run_binary(&ctx, m)?,
                    _ => unreachable!(),
                };
                for (mi, (s, fb)) in res.into_iter().enumerate() {
                    cells[mi][bi].scores.push(s);
                    cells[mi][bi].fallbacks += fb as usize;
                }
            }
            eprintln!(
                "{name}: budget {:.0}% done ({:.1} s)",
                b * 100.0,
                t0.elapsed().as_secs_f64()
            );
        }
        let metric = if binary { "accuracy" } else { "R²" };
        let src_note = match (&lin, &log) {
            (Some((_, lam, s2)), _) => {
                format!("source ridge lam = {lam} (5-fold CV on the source), sigma² = {s2:.4}")
            }
            (_, Some((_, lam))) => format!("source logistic lam = {lam} (5-fold CV on the source)"),
            _ => unreachable!(),
        };
        writeln!(
            doc,
            "\n### {name} ({task}; {metric} on held-out target, mean ± std over {} seeds)\n",
            seeds.len()
        )?;
        writeln!(doc, "{}\n", split.description.lines().next().unwrap_or(""))?;
        writeln!(
            doc,
            "Source n = {}, target n = {} (70% train / 30% test); {src_note}.\n",
            split.source.n_samples(),
            split.target.n_samples()
        )?;
        write!(doc, "| method |")?;
        for (bi, b) in budgets.iter().enumerate() {
            let (m, _) = mean_std(&n_train[bi].iter().map(|&v| v as f64).collect::<Vec<_>>());
            write!(doc, " {:.0}% (n≈{m:.0}) |", b * 100.0)?;
        }
        writeln!(doc)?;
        writeln!(doc, "|---|{}", "---|".repeat(budgets.len()))?;
        for (mi, mname) in METHODS.iter().enumerate() {
            write!(doc, "| {mname} |")?;
            for cell in &cells[mi] {
                let (m, s) = mean_std(&cell.scores);
                let fb = if cell.fallbacks > 0 {
                    format!(" ({}†)", cell.fallbacks)
                } else {
                    String::new()
                };
                write!(doc, " {m:.3} ± {s:.3}{fb} |")?;
            }
            writeln!(doc)?;
        }
        // Summary line: best method per budget vs target-only.
        write!(summary, "| {name} |")?;
        #[allow(clippy::needless_range_loop)] // `bi` indexes every method's row
        for bi in 0..budgets.len() {
            let t = mean_std(&cells[1][bi].scores).0;
            let r = mean_std(&cells[2][bi].scores).0;
            let (best_i, best) = (0..METHODS.len())
                .map(|mi| (mi, mean_std(&cells[mi][bi].scores).0))
                .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
            write!(
                summary,
                " {r:.3} vs {t:.3}; best: {} {best:.3} |",
                METHODS[best_i]
            )?;
        }
        writeln!(summary)?;
    }
    let mut md = String::new();
    writeln!(
        md,
        "# Classical transfer: learning curves on the real splits\n"
    )?;
    writeln!(md, "Generated by `cargo run --release -p forge-classical --example learning_curve` ({} s{}).\n", t0.elapsed().as_secs(), if quick { ", --quick" } else { "" })?;
    writeln!(md, "Protocol: features standardised with source statistics only; per seed the target is split 70/30 (stratified for classification) into train/test, and the budget is a seeded subsample of the target TRAINING part. Every hyperparameter is chosen by 5-fold cross-validation (stratified for classification; k clamped to n) on the target training rows only, by validation MSE (regression) or log-loss (classification): lam ∈ {{1e-3 … 1e4}} for target-only / regularized, tau² = sigma²/lam (Bayesian, sigma² = source residual variance), rank ∈ {{1, 2, 4, 8}} × lam ∈ {{0.1 … 1e3}} (vector adapter), epochs ∈ {{0, 1, 5, 20, 50}} (SGD, lr 0.01 regression / 0.05 logistic, batch 16). Covariance-shift transfer chooses its penalties and blend on a 30% held-out part of the target training rows. Moment mapping uses the target training features only (no labels). Source-only is the source model (lam by CV on the source).\n")?;
    writeln!(md, "† = number of runs (of {} per cell) in which the budget was too small for that method's cross-validation or fit (fewer than 2 rows, or a single class) and a documented default was used instead: lam = 1, tau² = sigma² (or 1), rank 1 / lam 10, 5 epochs; a logistic fit that cannot exist (one class: no finite intercept) falls back to the source model, target-only to the majority class.\n", seeds.len())?;
    writeln!(
        md,
        "## Summary: regularized transfer vs target-only (and the best method) per budget\n"
    )?;
    write!(md, "| split |")?;
    for b in &budgets {
        write!(md, " {:.0}% |", b * 100.0)?;
    }
    writeln!(md)?;
    writeln!(md, "|---|{}", "---|".repeat(budgets.len()))?;
    md.push_str(&summary);
    md.push_str(FINDINGS);
    writeln!(md, "\n## Tables")?;
    md.push_str(&doc);
    // Atomic write: temp file in the same folder, then rename.
    let tmp = out_path.with_extension("md.tmp");
    std::fs::write(&tmp, &md).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out_path)?;
    println!("{md}");
    eprintln!(
        "wrote {} in {:.1} s",
        out_path.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
