//! `forge rank --target data.tsv MODEL...`: forge-safety's encoder gate on the user's labelled
//! texts: which candidate model should be fine-tuned on them, and which would be harmful.
//!
//! Each MODEL (a local folder with `config.json`, `model.safetensors` and `tokenizer.json`, a
//! Hugging Face cache entry, or a Hub id) embeds the target texts with its own tokenizer
//! (mean-pooled last hidden states, as sentence-transformers); a checkpoint saved with a
//! sequence-classification head also gives its head's class probabilities on the texts, for
//! LEEP. [`forge_safety::rank_sources`] then ranks the candidates by LogME (You et al. 2021), tests
//! LogME and LEEP (Nguyen et al. 2020) against shuffled-label permutation nulls, and gives each a
//! verdict with its reasons.
//!
//! Exit code: the verdict of the recommended candidate (the best one not blocked): 0 transfer,
//! 1 transfer with caution; 2 when every candidate is blocked.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, D};
use clap::Args;
use forge_models::{AnyClassifier, AnyEncoder, ModelFiles, SequenceClassifier, TextTokenizer};
use forge_safety::{rank_sources, EncoderGateConfig, SourceCandidate, SourceRanking};
use serde::Serialize;

use crate::commands::gate::verdict_code;
use crate::error::{CliError, Result};
use crate::ui::Ui;

/// Below this many texts per feature dimension LogME's permutation null is unreliable: on SST-2
/// dev, all-MiniLM-L6-v2 (384 dimensions, logistic 5-fold accuracy 0.74 on 200 texts) scores
/// LogME 1.376 against a shuffled-label mean of 1.47 with 200 texts (blocked), but -0.568 against
/// -0.769 (p = 0.005, transfer) with all 872.
const MIN_ROWS_PER_DIM: usize = 2;

/// Arguments of `forge rank`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge rank --target reviews.tsv models/distilbert-sst2 models/minilm ~/models/bert-base
  forge rank --target data.tsv --text-col review --label-col stars --max-rows 500 models/a models/b --json

data.tsv is tab separated with a header line, e.g.
  sentence<TAB>label
  a gripping, funny film<TAB>positive
Labels may be any strings or numbers (at least two distinct ones).

Exit code: verdict of the recommended (best non-blocked) model: 0 transfer, 1 caution; 2 when all
are blocked; 64 usage error, 65 bad input (missing file or model, unknown column).")]
pub struct RankArgs {
    /// Labelled target texts: a TSV file with a header line.
    #[arg(long, value_name = "FILE")]
    pub target: PathBuf,
    /// Candidate models: folders (config.json + model.safetensors + tokenizer.json) or Hub ids.
    #[arg(value_name = "MODEL", required = true)]
    pub models: Vec<String>,
    /// Column of the texts (default: `sentence`, else `text`).
    #[arg(long, value_name = "NAME")]
    pub text_col: Option<String>,
    /// Column of the labels.
    #[arg(long, value_name = "NAME", default_value = "label")]
    pub label_col: String,
    /// Use at most N rows (the first N).
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
    /// Tokens per text (longer texts are truncated).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_length: usize,
    /// Texts per forward pass.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Label permutations of the LogME / LEEP null tests (>= 19).
    #[arg(long, value_name = "N", default_value_t = 199)]
    pub permutations: usize,
    /// Seed of the permutations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The result of `forge rank`, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct RankReport {
    /// The recommended model (best not blocked), if any.
    pub recommended: Option<String>,
    /// The exit code.
    pub exit_code: i32,
    /// Label values, in class-id order.
    pub classes: Vec<String>,
    /// forge-safety's ranking with every statistic.
    pub ranking: SourceRanking,
}

fn model_err(e: forge_models::ModelError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// Reads the labelled texts: (texts, class ids, class names in id order).
fn read_target(a: &RankArgs) -> Result<(Vec<String>, Vec<u32>, Vec<String>)> {
    use crate::commands::texts;
    let (t, raw) = texts::read_tsv(
        &a.target,
        "target TSV",
        a.text_col.as_deref(),
        &a.label_col,
        a.max_rows,
    )?;
    let names = texts::class_names(&raw, &a.target, &a.label_col)?;
    let ids = texts::class_ids(&raw, &names, &a.target)?;
    Ok((t, ids, names))
}

/// Softmax over the last dimension.
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Whether a checkpoint was saved with a sequence-classification head.
fn has_classifier_head(files: &ModelFiles) -> bool {
    std::fs::read_to_string(&files.config)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("architectures").cloned())
        .and_then(|a| a.as_array().cloned())
        .is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.ends_with("ForSequenceClassification"))
            })
        })
}

/// Embeds `texts` with one model: (features `[n, d]`, head probabilities `[n, c]` if any).
fn embed(
    name: &str,
    texts: &[String],
    a: &RankArgs,
    bar: &indicatif::ProgressBar,
) -> Result<(Tensor, Option<Tensor>)> {
    let files = ModelFiles::resolve(name).map_err(model_err)?;
    let tok_path = files.tokenizer.clone().ok_or_else(|| {
        CliError::Input(format!(
            "model {name:?} has no tokenizer.json in {} (needed to embed the texts)",
            files.dir.display()
        ))
    })?;
    let tok = TextTokenizer::from_file(&tok_path, a.max_length).map_err(model_err)?;
    let dev = Device::Cpu;
    let head = has_classifier_head(&files);
    let encoder = AnyEncoder::from_files(&files, &dev).map_err(model_err)?;
    let classifier = if head {
        Some(AnyClassifier::from_files(&files, None, 0, &dev).map_err(model_err)?)
    } else {
        None
    };
    let (mut feats, mut probs) = (Vec::new(), Vec::new());
    for chunk in texts.chunks(a.batch_size as usize) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let enc = tok.encode_batch(&refs, &dev).map_err(model_err)?;
        // inference only: no graph recorded
        let f = forge_lora::no_grad(|| encoder.embed(&enc.input_ids, &enc.attention_mask))
            .map_err(model_err)?;
        feats.push(f.to_dtype(DType::F64)?);
        if let Some(c) = &classifier {
            let logits =
                forge_lora::no_grad(|| c.forward(&enc.input_ids, Some(&enc.attention_mask)))
                    .map_err(model_err)?;
            probs.push(softmax(&logits.to_dtype(DType::F64)?)?);
        }
        bar.inc(chunk.len() as u64);
    }
    let probs = if probs.is_empty() {
        None
    } else {
        Some(Tensor::cat(&probs, 0)?)
    };
    Ok((Tensor::cat(&feats, 0)?, probs))
}

/// Runs `forge rank`; returns the exit code (see the module docs).
///
/// # Errors
/// A missing target file or model, unknown columns, a single class, a model without a
/// tokenizer, and forge-safety's errors.
pub fn run(a: &RankArgs, ui: &mut Ui) -> Result<i32> {
    if a.max_length == 0 {
        return Err(CliError::Usage("--max-length must be > 0".into()));
    }
    let (texts, labels, classes) = read_target(a)?;
    let bar = ui.bar((texts.len() * a.models.len()) as u64, "embedding");
    let mut candidates = Vec::new();
    for name in &a.models {
        bar.set_message(name.clone());
        let (features, probs) = embed(name, &texts, a, &bar)?;
        let d = features.dim(1)?;
        if texts.len() < MIN_ROWS_PER_DIM * d {
            bar.suspend(|| {
                ui.eprint(&format!(
                    "note: {name}: {} texts for {d}-dimensional features; with fewer than ~{MIN_ROWS_PER_DIM} x {d} texts LogME's shuffled-label null can exceed the true score, so a useful model may be blocked: use more texts\n",
                    texts.len()
                ))
            });
        }
        let mut c = SourceCandidate::new(name.clone(), features);
        if let Some(p) = probs {
            c = c.with_source_probs(p);
        }
        candidates.push(c);
    }
    bar.finish_and_clear();
    let mut cfg = EncoderGateConfig::default().with_seed(a.seed);
    cfg.n_permutations = a.permutations;
    let ranking = rank_sources(&candidates, &labels, None, &cfg)?;
    let (recommended, code) = match ranking.recommended() {
        Some(r) => (Some(r.name.clone()), verdict_code(r.verdict).1),
        None => (None, 2),
    };
    let report = RankReport {
        recommended,
        exit_code: code,
        classes,
        ranking,
    };
    if ui.json {
        ui.json_line(&report)?;
    } else {
        ui.print(&text(&report))?;
    }
    Ok(code)
}

fn text(r: &RankReport) -> String {
    let mut s = format!(
        "{} texts, {} classes ({}); recommended: {}\n",
        r.ranking.n,
        r.ranking.classes,
        r.classes.join(", "),
        r.recommended.as_deref().unwrap_or("none (all blocked)")
    );
    for a in &r.ranking.ranking {
        s += &format!(
            "{}. {}  {}  LogME {:.4} (null {:.4}, p = {:.3}){}\n",
            a.rank,
            a.name,
            verdict_code(a.verdict).0.to_uppercase(),
            a.logme_test.score,
            a.logme_test.null_mean,
            a.logme_test.p_value,
            a.leep_test
                .as_ref()
                .map(|t| format!(", LEEP {:.4} (p = {:.3})", t.score, t.p_value))
                .unwrap_or_default()
        );
        for reason in &a.reasons {
            s += &format!("     - {reason}\n");
        }
    }
    s
}
