//! `forge merge CONFIG.yml -o OUT`: a mergekit-style YAML merge with forge-merge, streamed over
//! the checkpoints on disk, and `forge lora soup`: LoRA adapters of one base combined into one.
//!
//! Model paths in the YAML are relative to the YAML file's folder (mergekit resolves them
//! relative to its working directory; a config kept next to its models works from anywhere).
//! The merge is [`forge_merge::merge_opened`]: tensor by tensor, memory-mapped inputs, the output
//! written atomically (nothing is written unless the whole merge succeeds), with the base model's
//! `config.json`. The summary counts the merged, kept (non-float), taken (shape mismatch or
//! missing in a model: copied from one model) and skipped tensors, and lists every tensor that
//! was not merged with the reason.

use std::path::{Path, PathBuf};

use clap::Args;
use forge_merge::{MergeConfig, TensorOutcome, WriteOptions};
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::ui::Ui;

/// Arguments of `forge merge`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge merge ties.yml -o merged/
  forge merge soup.yml -o merged/ --json | jq .counts

A mergekit YAML (merge_method: linear | slerp | task_arithmetic | ties | dare_ties | dare_linear |
breadcrumbs...; base_model; models with parameters weight/density; dtype), e.g.:
  merge_method: ties
  base_model: models/base
  models:
    - model: models/ft1
      parameters: {weight: 0.6, density: 0.5}
    - model: models/ft2
      parameters: {weight: 0.4, density: 0.7}
  dtype: float32")]
pub struct MergeArgs {
    /// The mergekit YAML file.
    #[arg(value_name = "CONFIG.yml")]
    pub config: PathBuf,
    /// Output folder (`model.safetensors` + `config.json`).
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
    /// Folder the model paths are relative to (default: the YAML file's folder).
    #[arg(long, value_name = "DIR")]
    pub models_root: Option<PathBuf>,
}

/// One tensor that was not merged.
#[derive(Debug, Serialize)]
pub struct NotMerged {
    /// Tensor name.
    pub name: String,
    /// `kept`, `taken` or `skipped`.
    pub outcome: &'static str,
    /// The model it was copied from, if any.
    pub from: Option<String>,
    /// Why.
    pub reason: String,
}

/// The result of `forge merge`, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct MergeSummary {
    /// The method.
    pub method: String,
    /// The output folder.
    pub output: PathBuf,
    /// Tensors in the report.
    pub tensors: usize,
    /// Counts: merged, kept, taken, skipped.
    pub counts: Counts,
    /// Every tensor not merged, with the reason.
    pub not_merged: Vec<NotMerged>,
}

/// Tensor counts by outcome.
#[derive(Debug, Serialize)]
pub struct Counts {
    /// Merged with the method.
    pub merged: usize,
    /// Non-float tensors copied unchanged.
    pub kept: usize,
    /// Copied from one model (shape mismatch, missing elsewhere).
    pub taken: usize,
    /// Left out.
    pub skipped: usize,
}

fn merge_err(e: forge_merge::MergeError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// Runs `forge merge`.
///
/// # Errors
/// A missing or malformed YAML (unknown method, bad parameter), a missing model, tensors that
/// cannot be merged, or an output that cannot be written.
pub fn run(a: &MergeArgs, ui: &mut Ui) -> Result<i32> {
    if !a.config.is_file() {
        return Err(CliError::MissingInput {
            what: "merge config",
            path: a.config.clone(),
        });
    }
    let config = MergeConfig::from_yaml_file(&a.config).map_err(merge_err)?;
    let root = a
        .models_root
        .clone()
        .or_else(|| a.config.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let spinner = ui.spinner(&format!(
        "opening the {} models",
        config.input_names().len()
    ));
    let models = forge_merge::files::open_inputs(&config, &root).map_err(merge_err)?;
    spinner.set_message(format!(
        "merging ({}) into {}",
        config.merge_method,
        a.output.display()
    ));
    let report = forge_merge::merge_opened(&config, &models, &a.output, &WriteOptions::default())
        .map_err(merge_err)?;
    spinner.finish_and_clear();
    let (merged, kept, taken, skipped) = report.counts();
    let not_merged = report
        .tensors
        .iter()
        .filter_map(|t| match &t.outcome {
            TensorOutcome::Merged => None,
            TensorOutcome::Kept { from } => Some(NotMerged {
                name: t.name.clone(),
                outcome: "kept",
                from: Some(from.clone()),
                reason: "not a float tensor: copied unchanged".into(),
            }),
            TensorOutcome::Taken { from, reason } => Some(NotMerged {
                name: t.name.clone(),
                outcome: "taken",
                from: Some(from.clone()),
                reason: reason.clone(),
            }),
            TensorOutcome::Skipped { reason } => Some(NotMerged {
                name: t.name.clone(),
                outcome: "skipped",
                from: None,
                reason: reason.clone(),
            }),
        })
        .collect();
    let s = MergeSummary {
        method: config.merge_method.to_string(),
        output: a.output.clone(),
        tensors: report.tensors.len(),
        counts: Counts {
            merged,
            kept,
            taken,
            skipped,
        },
        not_merged,
    };
    if ui.json {
        ui.json_line(&s)?;
    } else {
        let mut t = format!(
            "{}: {} tensors -> {} (merged {merged}, kept {kept}, taken {taken}, skipped {skipped})\n",
            s.method,
            s.tensors,
            s.output.display()
        );
        for n in &s.not_merged {
            t += &format!(
                "  {:<8} {}{}: {}\n",
                n.outcome,
                n.name,
                n.from
                    .as_ref()
                    .map(|f| format!(" (from {f})"))
                    .unwrap_or_default(),
                n.reason
            );
        }
        ui.print(&t)?;
    }
    Ok(0)
}
