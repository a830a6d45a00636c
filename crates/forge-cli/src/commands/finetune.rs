//! `forge finetune --model M --train data.tsv [--val data.tsv] [--lora r] [--ewc-from DIR] -o OUT`: forge-models'
//! `fine_tune` on the user's labelled texts, with carbon tracking (forge-carbon) and a progress bar.
//!
//! The model is a DistilBERT or BERT checkpoint (folder, Hugging Face cache entry or Hub id) with
//! its `tokenizer.json`; a classification head of the right size is created when the checkpoint
//! has none or one of another size. With `--lora r`, LoRA (Hu et al. 2021) adapters of rank `r`
//! are injected into the attention query and value projections (`q_lin`/`v_lin` or
//! `query`/`value`) and the head is trained in full (`modules_to_save`); OUT is then a PEFT
//! adapter folder. Without it, every parameter is trained and OUT is a full checkpoint
//! (`save_pretrained`, with the tokenizer). OUT also receives `history.json` (losses, validation
//! metrics per epoch, energy and CO2) and a CodeCarbon-compatible row in `OUT/emissions.csv`.
//!
//! Continual fine-tuning with elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming
//! catastrophic forgetting in neural networks", PNAS 114(13)): `--save-ewc` estimates the
//! diagonal Fisher of the fine-tuned model on its training texts (forge-ewc, empirical estimator
//! by default) and writes it with the anchor weights to `OUT/ewc.safetensors`; a later
//! `forge finetune --model OUT --ewc-from OUT ...` on a new task adds the penalty
//! `(lambda / 2) sum_i F_i (theta_i - theta*_i)^2` to the loss, so that the parameters the first
//! task relied on move less. The classification head is left out of the penalty (it is replaced
//! when the new task has another number of classes).

use std::path::PathBuf;

use candle_core::Device;
use clap::Args;
use forge_carbon::{CarbonConfig, CarbonTracker};
use forge_models::train::{
    fine_tune, Callback, Control, EpochRecord, Hooks, StepEvent, TextDataset, TrainConfig,
};
use forge_models::{AnyClassifier, ModelFiles, SavePretrained, SequenceClassifier, TextTokenizer};
use serde::Serialize;

use crate::commands::texts;
use crate::error::{CliError, Result};
use crate::ui::Ui;

/// Arguments of `forge finetune`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  forge finetune --model models/distilbert-base-uncased --train train.tsv --val dev.tsv --lora 8 -o runs/lora
  forge finetune --model models/all-minilm-l6-v2 --train train.tsv --epochs 2 --lr 5e-5 -o runs/full
  forge finetune --model models/all-minilm-l6-v2 --train sst2.tsv --save-ewc -o runs/sst2
  forge finetune --model runs/sst2 --ewc-from runs/sst2 --train agnews.tsv -o runs/agnews

train.tsv / dev.tsv: tab separated, header line, a text column (sentence or text, or --text-col)
and a label column (label, or --label-col).")]
pub struct FinetuneArgs {
    /// The model: a folder (config.json + model.safetensors + tokenizer.json) or a Hub id.
    #[arg(long, value_name = "M")]
    pub model: String,
    /// Training texts (TSV).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// Validation texts (TSV), evaluated after every epoch.
    #[arg(long, value_name = "FILE")]
    pub val: Option<PathBuf>,
    /// Train LoRA adapters of this rank (and the head) instead of every parameter.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub lora: Option<u64>,
    /// LoRA alpha (default 2 r).
    #[arg(long, value_name = "A")]
    pub lora_alpha: Option<f64>,
    /// Epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Learning rate (default 5e-5, or 5e-4 with --lora).
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Batch size.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Tokens per text.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Use at most N rows of each file.
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,
    /// Column of the texts (default: sentence, else text).
    #[arg(long, value_name = "NAME")]
    pub text_col: Option<String>,
    /// Column of the labels.
    #[arg(long, value_name = "NAME", default_value = "label")]
    pub label_col: String,
    /// Seed (head initialisation, adapters, shuffling, dropout).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// After training, estimate the diagonal Fisher on the training texts and save it with the
    /// anchor weights to OUT/ewc.safetensors, for a later `--ewc-from OUT`.
    #[arg(long)]
    pub save_ewc: bool,
    /// Fisher estimator for --save-ewc: empirical (per-sample gradients of the true labels),
    /// true (per-sample, exact expectation over the classes) or batch (mini-batches of 16).
    #[arg(long, value_name = "E", default_value = "empirical", value_parser = ["empirical", "true", "batch"])]
    pub fisher: String,
    /// Texts used for the Fisher (the first N training rows).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub fisher_samples: u64,
    /// Penalise moving away from an earlier fine-tune: a folder holding ewc.safetensors (written by
    /// --save-ewc) or the file itself.
    #[arg(long, value_name = "DIR")]
    pub ewc_from: Option<PathBuf>,
    /// EWC strength lambda (for --ewc-from: overrides the stored value; for --save-ewc: the value
    /// stored).
    #[arg(long, value_name = "L", default_value_t = 1e4)]
    pub ewc_lambda: f64,
    /// Output folder.
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
}

/// The EWC state file inside a fine-tuning output folder.
pub const EWC_FILE: &str = "ewc.safetensors";

fn ewc_err(e: forge_ewc::EwcError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// Parameters that EWC never penalises: the classification head.
fn is_head(name: &str) -> bool {
    name.starts_with("classifier.") || name.starts_with("pre_classifier.")
}

/// Loads `--ewc-from` and binds it to the model's trainable parameters (head excluded, shapes
/// that changed skipped).
fn load_ewc(
    from: &std::path::Path,
    lambda: f64,
    model: &mut AnyClassifier,
) -> Result<(forge_ewc::Ewc, forge_ewc::BindReport)> {
    let file = if from.is_dir() {
        from.join(EWC_FILE)
    } else {
        from.to_path_buf()
    };
    if !file.is_file() {
        return Err(CliError::Input(format!(
            "--ewc-from: {} not found (write it with `forge finetune --save-ewc`)",
            file.display()
        )));
    }
    let params = forge_lora::named_trainable(model);
    let filter = forge_ewc::ParamFilter::new()
        .skip_shape_mismatch(true)
        .exclude_if(is_head);
    let (mut ewc, report) = forge_ewc::Ewc::load(&file, &params, &filter).map_err(|e| {
        CliError::Input(format!(
            "--ewc-from {}: {}",
            file.display(),
            crate::error::one_line(&e)
        ))
    })?;
    if report.bound.is_empty() {
        return Err(CliError::Input(format!(
            "--ewc-from {}: no trainable parameter of this model is in the EWC state{}",
            file.display(),
            if model_has_adapters(model) {
                " (with --lora only the adapters train; EWC needs full fine-tuning)"
            } else {
                ""
            }
        )));
    }
    ewc.set_lambda(lambda).map_err(ewc_err)?;
    Ok((ewc, report))
}

fn model_has_adapters(model: &mut AnyClassifier) -> bool {
    forge_lora::named_trainable(model)
        .iter()
        .any(|(n, _)| n.contains(".lora_A."))
}

/// The diagonal Fisher of the fine-tuned model on the first `n` training texts, anchored at the
/// current weights, written to `out/ewc.safetensors`.
fn save_ewc(
    a: &FinetuneArgs,
    model: &mut AnyClassifier,
    train: &TextDataset,
    out: &std::path::Path,
) -> Result<usize> {
    use forge_ewc::{fisher_diagonal, Ewc, EwcConfig, FisherConfig, FisherEstimator, Targets};
    let params: Vec<(String, candle_core::Var)> = forge_lora::named_trainable(model)
        .into_iter()
        .filter(|(n, _)| !is_head(n))
        .collect();
    if params.is_empty() {
        return Err(CliError::Usage(
            "--save-ewc: the model has no trainable parameter outside the head".into(),
        ));
    }
    model.set_training(false);
    let estimator = match a.fisher.as_str() {
        "true" => FisherEstimator::TrueExact,
        "batch" => FisherEstimator::Batch { batch_size: 16 },
        _ => FisherEstimator::Empirical,
    };
    let mut config = FisherConfig::new(estimator);
    config.max_samples = Some((a.fisher_samples as usize).min(train.len()));
    let labels: Vec<usize> = train.labels().iter().map(|&l| l as usize).collect();
    let dev = Device::Cpu;
    let m: &AnyClassifier = model;
    let fisher = fisher_diagonal(
        &params,
        Targets::Labels(&labels),
        |idx: &[usize]| -> forge_models::Result<candle_core::Tensor> {
            let b = train.batch(idx, a.max_length, &dev)?;
            m.forward(&b.input_ids, Some(&b.attention_mask))
        },
        &config,
    )
    .map_err(ewc_err)?;
    let ewc = Ewc::new(&params, &fisher, EwcConfig::new(a.ewc_lambda)).map_err(ewc_err)?;
    ewc.save(out.join(EWC_FILE)).map_err(ewc_err)?;
    Ok(fisher.n_samples())
}

/// The result of `forge finetune`, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct FinetuneReport {
    /// The output folder.
    pub output: PathBuf,
    /// `"lora"` or `"full"`.
    pub mode: &'static str,
    /// Class names in id order.
    pub classes: Vec<String>,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Validation accuracy after the last evaluated epoch.
    pub val_accuracy: Option<f64>,
    /// Energy of the run, kWh.
    pub energy_kwh: f64,
    /// Emissions of the run, kg CO2-eq.
    pub emissions_kg: f64,
    /// The training history.
    pub history: forge_models::train::History,
    /// How CPU and RAM energy were measured (e.g. `RAPL / model`), for the text output.
    #[serde(skip)]
    pub measured_with: String,
}

fn model_err(e: forge_models::ModelError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// Progress bar over the optimisation steps.
struct Progress<'a> {
    bar: &'a indicatif::ProgressBar,
}

impl Callback for Progress<'_> {
    fn on_start(&mut self, total_steps: usize) {
        self.bar.set_length(total_steps as u64);
    }
    fn on_step(&mut self, e: &StepEvent) -> Control {
        self.bar.set_position(e.step as u64);
        self.bar
            .set_message(format!("epoch {} loss {:.4}", e.epoch, e.loss));
        Control::Continue
    }
    fn on_epoch(&mut self, r: &mut EpochRecord) -> Control {
        if let Some(v) = &r.val {
            self.bar.println(format!(
                "epoch {}: train loss {:.4}, val loss {:.4}, val accuracy {:.4}",
                r.epoch, r.train_loss, v.loss, v.accuracy
            ));
        }
        Control::Continue
    }
}

/// Runs `forge finetune`: [`execute`], then prints the report (`--json`: as JSON).
///
/// # Errors
/// [`execute`]'s.
pub fn run(a: &FinetuneArgs, ui: &mut Ui) -> Result<i32> {
    let report = execute(a, ui)?;
    if ui.json {
        ui.json_line(&report)?;
    } else {
        ui.print(&format!(
            "{} fine-tuning, {} trainable parameters, {} epochs{} -> {}; {:.3e} kWh, {:.3e} kg CO2eq ({})\n",
            report.mode,
            report.trainable_parameters,
            report.history.epochs.len(),
            report
                .val_accuracy
                .map(|v| format!(", val accuracy {v:.4}"))
                .unwrap_or_default(),
            report.output.display(),
            report.energy_kwh,
            report.emissions_kg,
            report.measured_with
        ))?;
    }
    Ok(0)
}

/// Fine-tunes as `forge finetune` does and writes its outputs to `a.output`, printing nothing
/// but the progress bar; returns the report (`forge sweep` runs each unit through this).
///
/// # Errors
/// Missing files or model, unknown columns, validation labels unseen in training, bad training
/// settings (forge-models' `TrainConfig` checks), and write errors.
pub fn execute(a: &FinetuneArgs, ui: &mut Ui) -> Result<FinetuneReport> {
    let (train_texts, train_raw) = texts::read_tsv(
        &a.train,
        "training TSV",
        a.text_col.as_deref(),
        &a.label_col,
        a.max_rows,
    )?;
    let classes = texts::class_names(&train_raw, &a.train, &a.label_col)?;
    let train_labels = texts::class_ids(&train_raw, &classes, &a.train)?;
    let val = match &a.val {
        Some(p) => {
            let (t, raw) = texts::read_tsv(
                p,
                "validation TSV",
                a.text_col.as_deref(),
                &a.label_col,
                a.max_rows,
            )?;
            Some((t, texts::class_ids(&raw, &classes, p)?))
        }
        None => None,
    };
    let files = ModelFiles::resolve(&a.model).map_err(model_err)?;
    let tok_path = files.tokenizer.clone().ok_or_else(|| {
        CliError::Input(format!(
            "model {:?} has no tokenizer.json in {}",
            a.model,
            files.dir.display()
        ))
    })?;
    let tok = TextTokenizer::from_file(&tok_path, a.max_length).map_err(model_err)?;
    let dev = Device::Cpu;
    let mut model = AnyClassifier::from_files(&files, None, a.seed, &dev).map_err(model_err)?;
    if model.num_labels() != classes.len() {
        forge_models::transfer::replace_head(
            &mut model,
            classes.len(),
            forge_models::transfer::HF_INIT_STD,
            a.seed,
        )
        .map_err(model_err)?;
    }
    let lora_cfg = match a.lora {
        Some(r) => {
            let targets: &[&str] =
                if forge_lora::LoraModel::architecture(&model).contains("distilbert") {
                    &["q_lin", "v_lin"]
                } else {
                    &["query", "value"]
                };
            let cfg = forge_lora::LoraConfig::new(
                r as usize,
                a.lora_alpha.unwrap_or(2.0 * r as f64),
                targets,
            )
            .with_modules_to_save(&["classifier"]);
            forge_lora::LoraInjector::new(cfg.clone())
                .map_err(|e| CliError::Usage(crate::error::one_line(&e)))?
                .with_seed(a.seed)
                .inject(&mut model)
                .map_err(|e| CliError::Input(crate::error::one_line(&e)))?;
            Some(cfg)
        }
        None => None,
    };
    let train = TextDataset::new(&train_texts, &train_labels, &tok).map_err(model_err)?;
    let val = match &val {
        Some((t, l)) => Some(TextDataset::new(t, l, &tok).map_err(model_err)?),
        None => None,
    };
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        max_length: a.max_length,
        learning_rate: a.lr.unwrap_or(if a.lora.is_some() { 5e-4 } else { 5e-5 }),
        seed: a.seed,
        ..TrainConfig::default()
    };
    config
        .validate()
        .map_err(|e| CliError::Usage(crate::error::one_line(&e)))?;

    if a.save_ewc && a.lora.is_some() {
        return Err(CliError::Usage(
            "--save-ewc needs full fine-tuning (without --lora): EWC penalises the model's own weights"
                .into(),
        ));
    }
    let ewc = match &a.ewc_from {
        Some(from) => Some(load_ewc(from, a.ewc_lambda, &mut model)?),
        None => None,
    };
    if let Some((_, report)) = &ewc {
        tracing::info!(
            bound = report.bound.len(),
            excluded = report.excluded.len(),
            skipped_shape = report.skipped_shape.len(),
            "EWC penalty bound"
        );
    }

    let mut tracker = CarbonTracker::new(CarbonConfig::from_env()?)?;
    let bar = ui.bar(0, "fine-tuning");
    tracker.start()?;
    let mut hooks = Hooks::new().callback(Progress { bar: &bar });
    if let Some((e, _)) = &ewc {
        hooks
            .push_penalty(move || -> candle_core::Result<candle_core::Tensor> { Ok(e.penalty()?) });
    }
    let result = fine_tune(&mut model, &train, val.as_ref(), &config, &mut hooks);
    drop(hooks);
    let fisher_samples = match (&result, a.save_ewc) {
        (Ok(_), true) => {
            std::fs::create_dir_all(&a.output).map_err(|e| CliError::Output {
                path: a.output.clone(),
                reason: e.to_string(),
            })?;
            bar.set_message("Fisher for --save-ewc");
            Some(save_ewc(a, &mut model, &train, &a.output)?)
        }
        _ => None,
    };
    let emissions = tracker.stop_no_output()?;
    bar.finish_and_clear();
    let mut history = result.map_err(model_err)?;
    history
        .scalars
        .insert("energy_kwh".into(), emissions.energy_kwh);
    history
        .scalars
        .insert("emissions_kg".into(), emissions.emissions_kg);
    if let Some((e, report)) = &ewc {
        history
            .scalars
            .insert("ewc_lambda".into(), e.config().lambda);
        history
            .scalars
            .insert("ewc_penalised_tensors".into(), report.bound.len() as f64);
        history.scalars.insert(
            "ewc_final_penalty".into(),
            e.penalty_value().map_err(ewc_err)?,
        );
    }
    if let Some(n) = fisher_samples {
        history.scalars.insert("fisher_samples".into(), n as f64);
    }

    std::fs::create_dir_all(&a.output).map_err(|e| CliError::Output {
        path: a.output.clone(),
        reason: e.to_string(),
    })?;
    match &lora_cfg {
        Some(cfg) => forge_lora::save_adapter(&mut model, cfg, &a.output)
            .map_err(|e| CliError::Input(crate::error::one_line(&e)))?,
        None => {
            model.save_pretrained(&a.output).map_err(model_err)?;
            let bytes = std::fs::read(&tok_path)?;
            forge_linalg::io::write_atomic(&a.output.join("tokenizer.json"), &bytes)?;
        }
    }
    history
        .save_json(&a.output.join("history.json"))
        .map_err(model_err)?;
    let csv = a.output.join("emissions.csv");
    forge_carbon::append_csv(&csv, &emissions).map_err(|e| CliError::Output {
        path: csv.clone(),
        reason: crate::error::one_line(&e),
    })?;
    let report = FinetuneReport {
        output: a.output.clone(),
        mode: if lora_cfg.is_some() { "lora" } else { "full" },
        classes,
        trainable_parameters: history.trainable_parameters,
        val_accuracy: history.last_val().map(|v| v.accuracy),
        energy_kwh: emissions.energy_kwh,
        emissions_kg: emissions.emissions_kg,
        history,
        measured_with: format!("{} / {}", emissions.cpu_method, emissions.ram_method),
    };
    Ok(report)
}
