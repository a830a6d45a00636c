//! `forge gate`: forge-safety's tabular negative-transfer gate on the user's own CSV files.
//!
//! Both files are read with forge-data's CSV reader (header line, comma separated, numeric
//! cells), the features standardised with the SOURCE mean and standard deviation (no target
//! statistic leaks into preprocessing, as forge-bench does), and handed to
//! [`forge_safety::gate_linear`] (regression: regularized transfer vs ridge, scored by R^2) or
//! [`forge_safety::gate_logistic`] (binary classification: regularized logistic transfer vs
//! logistic regression, scored by negative log-loss). With `--shift-only` no labels are used:
//! [`forge_safety::should_transfer`] on the features alone.
//!
//! Exit code: 0 transfer, 1 transfer with caution, 2 block (see [`crate::error`] for errors).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use forge_data::TabularDataset;
use forge_safety::{
    gate_linear, gate_logistic, should_transfer, GateConfig, LinearTransfer, LogisticTransfer,
    Score, TransferDecision, Verdict,
};
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::ui::Ui;

/// The learning task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateTask {
    /// Classification when the target column holds only 0 and 1, else regression.
    Auto,
    /// Real-valued target: ridge transfer, scored by R^2.
    Regression,
    /// Binary target (exactly two distinct values, mapped to 0/1 in sorted order): logistic
    /// transfer, scored by negative log-loss.
    Classification,
}

/// Arguments of `forge gate`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge gate --source datasets/winequality-red.csv --target datasets/winequality-white.csv --target-col quality
  forge gate --source old.csv --target new.csv --target-col churned --task classification --features age,tenure,spend
  forge gate --source a.csv --target b.csv --target-col y --json | jq .verdict

Exit code: 0 transfer, 1 transfer with caution, 2 block; 64 usage error, 65 bad input (missing file,
unknown column, non-numeric cell).")]
pub struct GateArgs {
    /// CSV file of the source domain (where the model would be trained), with a header line.
    #[arg(long, value_name = "FILE")]
    pub source: PathBuf,
    /// CSV file of the target domain (where the model would be used), same columns.
    #[arg(long, value_name = "FILE")]
    pub target: PathBuf,
    /// Name of the column to predict.
    #[arg(long, value_name = "NAME")]
    pub target_col: String,
    /// The task.
    #[arg(long, value_enum, default_value = "auto")]
    pub task: GateTask,
    /// Feature columns, comma separated (default: every column except the target).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub features: Vec<String>,
    /// Only test for covariate shift on the features (no labels, no validation).
    #[arg(long)]
    pub shift_only: bool,
    /// Use at most N rows of each file (a seeded random subset), to bound the run time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(10..))]
    pub max_rows: Option<u64>,
    /// Permutations of the MMD test.
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub permutations: u64,
    /// Family-wise level of the shift tests.
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub alpha: f64,
    /// Seed of every random part (permutations, folds, subsets).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The result of `forge gate`, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct GateReport {
    /// `"transfer"`, `"transfer-with-caution"` or `"block"`.
    pub verdict: &'static str,
    /// The exit code (0, 1, 2).
    pub exit_code: i32,
    /// The task used.
    pub task: GateTask,
    /// Label mapping for classification: the value read as 0, then as 1.
    pub classes: Option<[f64; 2]>,
    /// Feature columns used.
    pub features: Vec<String>,
    /// forge-safety's decision with every statistic.
    pub decision: TransferDecision,
}

/// The verdict's name and exit code.
pub fn verdict_code(v: Verdict) -> (&'static str, i32) {
    match v {
        Verdict::Transfer => ("transfer", 0),
        Verdict::TransferWithCaution => ("transfer-with-caution", 1),
        Verdict::Block => ("block", 2),
    }
}

fn load(
    path: &Path,
    what: &'static str,
    target_col: &str,
    features: &[String],
) -> Result<TabularDataset> {
    if !path.is_file() {
        return Err(CliError::MissingInput {
            what,
            path: path.to_path_buf(),
        });
    }
    let cols: Vec<&str> = features.iter().map(String::as_str).collect();
    if cols.contains(&target_col) {
        return Err(CliError::Usage(format!(
            "--features lists the target column {target_col:?}"
        )));
    }
    Ok(forge_data::load_csv(path, target_col, &cols)?)
}

/// Distinct values of a target vector, sorted.
fn distinct(y: &[f64]) -> Vec<f64> {
    let mut v = y.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// Maps a binary target to 0/1 given the two class values.
fn to_binary(y: &[f64], classes: [f64; 2]) -> Vec<f64> {
    y.iter()
        .map(|&v| if v == classes[0] { 0.0 } else { 1.0 })
        .collect()
}

/// Runs `forge gate`; returns the exit code of the verdict.
///
/// # Errors
/// Missing files, unknown columns, non-numeric cells, a classification target without exactly
/// two values, and forge-safety's errors (too few rows, constant features, ...).
pub fn run(args: &GateArgs, ui: &mut Ui) -> Result<i32> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(CliError::Usage(format!(
            "--alpha must lie in (0, 1), got {}",
            args.alpha
        )));
    }
    let mut src = load(&args.source, "source CSV", &args.target_col, &args.features)?;
    let mut tgt = load(&args.target, "target CSV", &args.target_col, &args.features)?;
    if src.feature_names != tgt.feature_names {
        return Err(CliError::Input(format!(
            "the source and target files have different feature columns ({:?} vs {:?}); pass --features",
            src.feature_names, tgt.feature_names
        )));
    }
    if let Some(n) = args.max_rows {
        let n = n as usize;
        if src.n_samples() > n {
            src = src.subsample(forge_data::Budget::Count(n), args.seed)?;
        }
        if tgt.n_samples() > n {
            tgt = tgt.subsample(forge_data::Budget::Count(n), args.seed ^ 1)?;
        }
    }
    let ys = src.y_vec()?;
    let yt = tgt.y_vec()?;
    let mut both = ys.clone();
    both.extend_from_slice(&yt);
    let values = distinct(&both);
    let task = match args.task {
        GateTask::Auto if values.iter().all(|&v| v == 0.0 || v == 1.0) => GateTask::Classification,
        GateTask::Auto => GateTask::Regression,
        t => t,
    };
    let classes = if task == GateTask::Classification {
        if values.len() != 2 {
            return Err(CliError::Input(format!(
                "--task classification needs a binary target: column {:?} has {} distinct value(s) ({})",
                args.target_col,
                values.len(),
                values.iter().take(6).map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                    + if values.len() > 6 { ", ..." } else { "" }
            )));
        }
        Some([values[0], values[1]])
    } else {
        None
    };
    let scaler = forge_linalg::Standardizer::fit(&src.x)?;
    let xs = scaler.transform(&src.x)?;
    let xt = scaler.transform(&tgt.x)?;
    let (ys, yt) = match classes {
        Some(c) => (to_binary(&ys, c), to_binary(&yt, c)),
        None => (ys, yt),
    };
    let ys = Tensor::from_vec(ys, src.n_samples(), &Device::Cpu)?;
    let yt = Tensor::from_vec(yt, tgt.n_samples(), &Device::Cpu)?;

    let mut cfg = GateConfig::default().with_seed(args.seed);
    cfg.alpha = args.alpha;
    cfg.mmd.n_permutations = args.permutations as usize;
    let spinner = ui.spinner(&format!(
        "gating {} -> {} ({} + {} rows, {} features)",
        args.source.display(),
        args.target.display(),
        src.n_samples(),
        tgt.n_samples(),
        src.n_features()
    ));
    let decision = if args.shift_only {
        should_transfer(&xs, &xt, &cfg)?
    } else if classes.is_some() {
        cfg.validation.score = Score::NegLogLoss;
        gate_logistic(&xs, &ys, &xt, &yt, &LogisticTransfer::default(), &cfg)?
    } else {
        cfg.validation.score = Score::R2;
        gate_linear(&xs, &ys, &xt, &yt, &LinearTransfer::default(), &cfg)?
    };
    spinner.finish_and_clear();
    let (verdict, code) = verdict_code(decision.verdict);
    let report = GateReport {
        verdict,
        exit_code: code,
        task,
        classes,
        features: src.feature_names.clone(),
        decision,
    };
    if ui.json {
        ui.json_line(&report)?;
    } else {
        ui.print(&text(&report, args))?;
    }
    Ok(code)
}

fn text(r: &GateReport, a: &GateArgs) -> String {
    let d = &r.decision;
    let mut s = format!(
        "verdict: {}  ({} -> {}, {} + {} rows, {} features, {})\n",
        r.verdict.to_uppercase(),
        a.source.display(),
        a.target.display(),
        d.n_source,
        d.n_target,
        d.n_features,
        match (r.task, r.classes) {
            (GateTask::Classification, Some([c0, c1])) =>
                format!("classification of {:?}: {c0} -> 0, {c1} -> 1", a.target_col),
            _ => format!("regression of {:?}", a.target_col),
        }
    );
    s += "reasons:\n";
    for reason in &d.reasons {
        s += &format!("  - {reason}\n");
    }
    let mut by_d: Vec<_> = d.ks.features.iter().filter(|f| f.shifted).collect();
    by_d.sort_by(|x, y| y.statistic.total_cmp(&x.statistic));
    if !by_d.is_empty() {
        let names: Vec<String> = by_d
            .iter()
            .take(5)
            .map(|f| {
                let name = r.features.get(f.feature).map_or("?", String::as_str);
                format!("#{} {name:?} (D = {:.3})", f.feature, f.statistic)
            })
            .collect();
        s += &format!(
            "shifted features, largest first: {}{}\n",
            names.join(", "),
            if by_d.len() > 5 { ", ..." } else { "" }
        );
    }
    s += "checks:\n";
    let w = d.checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
    for c in &d.checks {
        s += &format!(
            "  {:<w$}  {:>10.4}  {} (threshold {:.4})  {}\n",
            c.name,
            c.value,
            if c.passed { "pass" } else { "FAIL" },
            c.threshold,
            c.rule,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mapping_is_sorted() {
        let v = distinct(&[2.0, 1.0, 2.0, 1.0]);
        assert_eq!(v, vec![1.0, 2.0]);
        assert_eq!(to_binary(&[2.0, 1.0], [1.0, 2.0]), vec![1.0, 0.0]);
    }

    #[test]
    fn verdict_codes() {
        assert_eq!(verdict_code(Verdict::Transfer).1, 0);
        assert_eq!(verdict_code(Verdict::TransferWithCaution).1, 1);
        assert_eq!(verdict_code(Verdict::Block).1, 2);
    }
}
