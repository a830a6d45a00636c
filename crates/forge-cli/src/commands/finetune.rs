//! `forge finetune --model M --train data.tsv [--val data.tsv] [--lora r] -o OUT`: forge-models'
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
    /// Output folder.
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
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

/// Runs `forge finetune`.
///
/// # Errors
/// Missing files or model, unknown columns, validation labels unseen in training, bad training
/// settings (forge-models' `TrainConfig` checks), and write errors.
pub fn run(a: &FinetuneArgs, ui: &mut Ui) -> Result<i32> {
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

    let mut tracker = CarbonTracker::new(CarbonConfig::from_env()?)?;
    let bar = ui.bar(0, "fine-tuning");
    tracker.start()?;
    let mut hooks = Hooks::new().callback(Progress { bar: &bar });
    let result = fine_tune(&mut model, &train, val.as_ref(), &config, &mut hooks);
    drop(hooks);
    let emissions = tracker.stop_no_output()?;
    bar.finish_and_clear();
    let mut history = result.map_err(model_err)?;
    history
        .scalars
        .insert("energy_kwh".into(), emissions.energy_kwh);
    history
        .scalars
        .insert("emissions_kg".into(), emissions.emissions_kg);

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
    };
    if ui.json {
        ui.json_line(&report)?;
    } else {
        ui.print(&format!(
            "{} fine-tuning, {} trainable parameters, {} epochs{} -> {}; {:.3e} kWh, {:.3e} kg CO2eq ({} / {})\n",
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
            emissions.cpu_method,
            emissions.ram_method
        ))?;
    }
    Ok(0)
}
