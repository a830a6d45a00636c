//! `forge lora`: inspect a PEFT LoRA adapter folder, fold one into its base checkpoint, combine
//! several (a LoRA soup with forge-merge's [`forge_merge::merge_lora_adapters`]: `delta = sum_i
//! w_i B_i A_i` per module, as LoraHub, kept exact by concatenating the factors or re-compressed
//! to `--rank` by SVD; saved as a PEFT adapter).
//!
//! `merge BASE ADAPTER -o OUT` loads BASE with forge-models (DistilBERT or BERT, with the
//! classification head's size taken from the adapter's saved head when it has one), loads the
//! adapter with [`forge_lora::load_adapter`] (all-or-nothing: an adapter of another architecture
//! or with other shapes is an error naming the module or tensor), folds every LoRA layer into its
//! base weight (`W + scaling * B A`, [`forge_lora::merge_all`], as PEFT's `merge_and_unload`) and
//! writes OUT with forge-models' `save_pretrained` (`config.json` + `model.safetensors`, atomic
//! writes; transformers' `from_pretrained` loads it); BASE's tokenizer files are copied along.
//!
//! `inspect DIR` reads `adapter_config.json` with forge-lora's [`forge_lora::read_adapter_config`]
//! (PEFT's field names, unsupported options rejected with a typed error) and the header of
//! `adapter_model.safetensors` (names, shapes and dtypes, no tensor data), and reports the rank,
//! alpha, scaling, target modules, the adapted module paths, the parameter counts (LoRA A/B and
//! `modules_to_save` copies) and the size on disk. It also checks the file against the config:
//! every `lora_A` has its `lora_B`, with rank `r`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::error::{CliError, Result};
use crate::ui::Ui;

/// `forge lora` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoraCmd {
    /// Rank, alpha, targets, parameter count and size of a PEFT adapter folder.
    #[command(after_help = "Examples:
  forge lora inspect runs/sst2-lora
  forge lora inspect runs/sst2-lora --json | jq .parameters")]
    Inspect(InspectArgs),
    /// Fold an adapter into its base checkpoint; the result loads in transformers and in Forge.
    #[command(after_help = "Examples:
  forge lora merge models/distilbert-base runs/sst2-lora -o models/distilbert-sst2
  forge lora merge base/ adapter/ -o merged/ --json")]
    Merge(MergeAdapterArgs),
    /// Combine adapters of one base model into one adapter (LoRA soup, optional SVD re-compression).
    #[command(after_help = "Examples:
  forge lora soup runs/sst2-lora runs/imdb-lora -o runs/sentiment-soup
  forge lora soup a/ b/ c/ --weights 0.5,0.3,0.2 --rank 8 -o soup/")]
    Soup(SoupArgs),
}

/// Arguments of `forge lora inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// One adapted module.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptedModule {
    /// Module path in the base model (PEFT prefix removed).
    pub path: String,
    /// Input features (columns of `lora_A`).
    pub in_features: usize,
    /// Output features (rows of `lora_B`).
    pub out_features: usize,
    /// Rank of this module's adapter.
    pub rank: usize,
}

/// What `forge lora inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// The folder.
    pub dir: PathBuf,
    /// `peft_type`.
    pub peft_type: String,
    /// `task_type`.
    pub task_type: Option<String>,
    /// `base_model_name_or_path`.
    pub base_model: Option<String>,
    /// `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub lora_alpha: f64,
    /// `use_rslora`.
    pub use_rslora: bool,
    /// The factor applied to `B A`: alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub scaling: f64,
    /// `lora_dropout`.
    pub lora_dropout: f64,
    /// `target_modules` as written (names, or `"all-linear"`).
    pub target_modules: Vec<String>,
    /// `modules_to_save`.
    pub modules_to_save: Vec<String>,
    /// Every adapted module with its shapes.
    pub adapted: Vec<AdaptedModule>,
    /// Parameters of the LoRA matrices A and B.
    pub lora_parameters: u64,
    /// Parameters of the `modules_to_save` copies (e.g. a classification head).
    pub saved_module_parameters: u64,
    /// Total parameters in the file.
    pub parameters: u64,
    /// Tensor dtypes in the file, with counts.
    pub dtypes: BTreeMap<String, usize>,
    /// Size of all files in the folder, bytes.
    pub size_bytes: u64,
}

/// Arguments of `forge lora merge`.
#[derive(Debug, Args)]
pub struct MergeAdapterArgs {
    /// The base checkpoint folder (`config.json` + `model.safetensors`), DistilBERT or BERT.
    #[arg(value_name = "BASE")]
    pub base: PathBuf,
    /// The PEFT adapter folder trained on BASE.
    #[arg(value_name = "ADAPTER")]
    pub adapter: PathBuf,
    /// Output folder: `config.json` + `model.safetensors` (transformers' `from_pretrained` loads it).
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
}

/// Arguments of `forge lora soup`.
#[derive(Debug, Args)]
pub struct SoupArgs {
    /// Two or more PEFT adapter folders of the same base model.
    #[arg(value_name = "ADAPTER", num_args = 2.., required = true)]
    pub adapters: Vec<PathBuf>,
    /// Mixing weights, comma separated, one per adapter (default: 1/n each, the average).
    #[arg(long, value_delimiter = ',', value_name = "W")]
    pub weights: Vec<f64>,
    /// Re-compress each module's combined update to this rank by SVD (default: exact, the ranks add up).
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// Output adapter folder.
    #[arg(long, short, value_name = "OUT")]
    pub output: PathBuf,
}

/// What `forge lora merge` did.
#[derive(Debug, Serialize)]
pub struct MergedAdapter {
    /// The base folder.
    pub base: PathBuf,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// The output folder.
    pub output: PathBuf,
    /// The model's architecture.
    pub architecture: String,
    /// LoRA layers folded into their base weights.
    pub merged_layers: usize,
    /// Tokenizer files copied from the base folder.
    pub copied: Vec<String>,
}

/// Files of a Hugging Face folder copied next to a merged checkpoint so that it is complete.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
];

fn model_err(e: forge_models::ModelError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// The number of labels of an adapter's saved classification head, if it has one
/// (a `modules_to_save` copy of `classifier`), read from the safetensors header.
fn adapter_num_labels(adapter: &Path) -> Result<Option<usize>> {
    let header = read_header(&adapter.join(forge_lora::io::ADAPTER_WEIGHTS))?;
    Ok(header
        .iter()
        .find(|(k, (_, shape))| k.ends_with(".classifier.weight") && shape.len() == 2)
        .map(|(_, (_, shape))| shape[0]))
}

/// Folds an adapter into its base checkpoint and saves the result (see `forge lora merge`).
///
/// # Errors
/// Missing folders or files, an adapter for another architecture or with other shapes (naming
/// the module or tensor), and write errors.
pub fn merge_adapter(base: &Path, adapter: &Path, out: &Path) -> Result<MergedAdapter> {
    use forge_models::SavePretrained;
    if !base.is_dir() {
        return Err(CliError::MissingInput {
            what: "base model folder",
            path: base.to_path_buf(),
        });
    }
    inspect(adapter)?; // the same checks and one-line errors as `forge lora inspect`
    let files = forge_models::ModelFiles::from_dir(base).map_err(model_err)?;
    let num_labels = adapter_num_labels(adapter)?;
    let mut model =
        forge_models::AnyClassifier::from_files(&files, num_labels, 0, &candle_core::Device::Cpu)
            .map_err(model_err)?;
    forge_lora::load_adapter(&mut model, adapter).map_err(lora_err)?;
    let merged_layers = forge_lora::merge_all(&mut model).map_err(lora_err)?;
    model.save_pretrained(out).map_err(model_err)?;
    let mut copied = Vec::new();
    for name in TOKENIZER_FILES {
        let src = base.join(name);
        if src.is_file() {
            let bytes = std::fs::read(&src)?;
            forge_linalg::io::write_atomic(&out.join(name), &bytes)?;
            copied.push(name.to_string());
        }
    }
    Ok(MergedAdapter {
        base: base.to_path_buf(),
        adapter: adapter.to_path_buf(),
        output: out.to_path_buf(),
        architecture: forge_lora::LoraModel::architecture(&model),
        merged_layers,
        copied,
    })
}

/// What `forge lora soup` did.
#[derive(Debug, Serialize)]
pub struct SoupSummary {
    /// The input adapters.
    pub adapters: Vec<PathBuf>,
    /// The mixing weights used.
    pub weights: Vec<f64>,
    /// Rank of the written adapter.
    pub rank: usize,
    /// Modules combined.
    pub modules: usize,
    /// Largest relative re-compression error over the modules (0 without `--rank`).
    pub max_compression_error: f64,
    /// The output folder.
    pub output: PathBuf,
}

/// Combines adapters with forge-merge's LoRA soup (see `forge lora soup`).
///
/// # Errors
/// Missing adapters, a weight count that differs from the adapter count, adapters of different
/// shapes, a bad rank, and write errors.
pub fn soup(a: &SoupArgs) -> Result<SoupSummary> {
    let summaries = a
        .adapters
        .iter()
        .map(|d| inspect(d))
        .collect::<Result<Vec<_>>>()?;
    // forge-merge takes the union of the adapted modules (adapters may target different layers
    // of one base); adapters with no module in common are for different models
    let first: std::collections::BTreeSet<&str> = summaries[0]
        .adapted
        .iter()
        .map(|m| m.path.as_str())
        .collect();
    for s in &summaries[1..] {
        if !s.adapted.iter().any(|m| first.contains(m.path.as_str())) {
            return Err(CliError::Input(format!(
                "adapters {} and {} share no adapted module (e.g. {:?} vs {:?}): they are not adapters of one base model",
                summaries[0].dir.display(),
                s.dir.display(),
                summaries[0].adapted.first().map(|m| m.path.as_str()).unwrap_or(""),
                s.adapted.first().map(|m| m.path.as_str()).unwrap_or("")
            )));
        }
    }
    let n = a.adapters.len();
    let weights = if a.weights.is_empty() {
        vec![1.0 / n as f64; n]
    } else if a.weights.len() != n {
        return Err(CliError::Usage(format!(
            "--weights has {} value(s) for {n} adapters",
            a.weights.len()
        )));
    } else {
        a.weights.clone()
    };
    let paths: Vec<&Path> = a.adapters.iter().map(PathBuf::as_path).collect();
    let r = forge_merge::merge_lora_adapters(&paths, &weights, a.rank, &a.output)
        .map_err(|e| CliError::Input(crate::error::one_line(&e)))?;
    Ok(SoupSummary {
        adapters: a.adapters.clone(),
        weights,
        rank: r.rank,
        modules: r.modules,
        max_compression_error: r
            .compression_error
            .iter()
            .map(|(_, e)| *e)
            .fold(0.0, f64::max),
        output: a.output.clone(),
    })
}
/// Runs a `forge lora` subcommand.
///
/// # Errors
/// As the subcommand.
pub fn run(cmd: &LoraCmd, ui: &mut Ui) -> Result<i32> {
    match cmd {
        LoraCmd::Inspect(a) => {
            let s = inspect(&a.dir)?;
            if ui.json {
                ui.json_line(&s)?;
            } else {
                ui.print(&inspect_text(&s))?;
            }
            Ok(0)
        }
        LoraCmd::Soup(a) => {
            let r = soup(a)?;
            if ui.json {
                ui.json_line(&r)?;
            } else {
                ui.print(&format!(
                    "{} adapters (weights {:?}) -> {}: rank {}, {} modules, max re-compression error {:.2e}\n",
                    r.adapters.len(),
                    r.weights,
                    r.output.display(),
                    r.rank,
                    r.modules,
                    r.max_compression_error
                ))?;
            }
            Ok(0)
        }
        LoraCmd::Merge(a) => {
            let spinner = ui.spinner(&format!(
                "folding {} into {}",
                a.adapter.display(),
                a.base.display()
            ));
            let m = merge_adapter(&a.base, &a.adapter, &a.output)?;
            spinner.finish_and_clear();
            if ui.json {
                ui.json_line(&m)?;
            } else {
                ui.print(&format!(
                    "{}: {} LoRA layer(s) of {} folded into {} -> {} (config.json, model.safetensors{})\n",
                    m.architecture,
                    m.merged_layers,
                    m.adapter.display(),
                    m.base.display(),
                    m.output.display(),
                    m.copied.iter().map(|c| format!(", {c}")).collect::<String>()
                ))?;
            }
            Ok(0)
        }
    }
}

fn lora_err(e: forge_lora::LoraError) -> CliError {
    CliError::Input(crate::error::one_line(&e))
}

/// Reads an adapter folder (see the module docs).
///
/// # Errors
/// A missing folder or file, a config PEFT options Forge does not support, a corrupt
/// safetensors header, or a file that disagrees with its config (rank, missing B).
pub fn inspect(dir: &Path) -> Result<AdapterSummary> {
    if !dir.is_dir() {
        return Err(CliError::MissingInput {
            what: "adapter folder",
            path: dir.to_path_buf(),
        });
    }
    let weights = dir.join(forge_lora::io::ADAPTER_WEIGHTS);
    if !dir.join(forge_lora::io::ADAPTER_CONFIG).is_file() {
        return Err(CliError::MissingInput {
            what: "adapter config",
            path: dir.join(forge_lora::io::ADAPTER_CONFIG),
        });
    }
    if !weights.is_file() {
        return Err(CliError::MissingInput {
            what: "adapter weights",
            path: weights,
        });
    }
    let cfg = forge_lora::read_adapter_config(dir).map_err(lora_err)?;
    let header = read_header(&weights)?;
    let mut a_shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut b_shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let (mut lora_params, mut saved_params) = (0u64, 0u64);
    let mut dtypes = BTreeMap::new();
    for (name, (dtype, shape)) in &header {
        *dtypes.entry(dtype.clone()).or_insert(0) += 1;
        let n: u64 = shape.iter().map(|&d| d as u64).product();
        let key = name.strip_prefix(forge_lora::PEFT_PREFIX).unwrap_or(name);
        let split = |kind: &str| {
            [format!(".{kind}.weight"), format!(".{kind}.default.weight")]
                .iter()
                .find_map(|s| key.strip_suffix(s.as_str()).map(str::to_string))
        };
        if let Some(p) = split("lora_A") {
            a_shapes.insert(p, shape.clone());
            lora_params += n;
        } else if let Some(p) = split("lora_B") {
            b_shapes.insert(p, shape.clone());
            lora_params += n;
        } else {
            saved_params += n;
        }
    }
    let bad = |reason: String| CliError::Input(format!("{}: {reason}", weights.display()));
    let mut adapted = Vec::new();
    for (path, a) in &a_shapes {
        let b = b_shapes
            .get(path)
            .ok_or_else(|| bad(format!("module {path:?} has lora_A but no lora_B")))?;
        if a.len() != 2 || b.len() != 2 || a[0] != b[1] {
            return Err(bad(format!(
                "module {path:?}: lora_A {a:?} and lora_B {b:?} are not [r, in] and [out, r]"
            )));
        }
        if a[0] != cfg.r {
            return Err(bad(format!(
                "module {path:?} has rank {} but adapter_config.json says r = {} (rank_pattern is not supported)",
                a[0], cfg.r
            )));
        }
        adapted.push(AdaptedModule {
            path: path.clone(),
            in_features: a[1],
            out_features: b[0],
            rank: a[0],
        });
    }
    if let Some(p) = b_shapes.keys().find(|p| !a_shapes.contains_key(*p)) {
        return Err(bad(format!("module {p:?} has lora_B but no lora_A")));
    }
    let size_bytes = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let target_modules = match &cfg.target_modules {
        forge_lora::TargetModules::Names(v) => v.clone(),
        forge_lora::TargetModules::Single(s) => vec![s.clone()],
    };
    Ok(AdapterSummary {
        dir: dir.to_path_buf(),
        peft_type: cfg.peft_type.clone(),
        task_type: cfg.task_type.clone(),
        base_model: cfg.base_model_name_or_path.clone(),
        r: cfg.r,
        lora_alpha: cfg.lora_alpha,
        use_rslora: cfg.use_rslora,
        scaling: cfg.scaling(),
        lora_dropout: cfg.lora_dropout,
        target_modules,
        modules_to_save: cfg.modules_to_save.clone().unwrap_or_default(),
        adapted,
        lora_parameters: lora_params,
        saved_module_parameters: saved_params,
        parameters: lora_params + saved_params,
        dtypes,
        size_bytes,
    })
}

/// Tensor names with (dtype, shape) from a safetensors header, without reading the data.
fn read_header(path: &Path) -> Result<BTreeMap<String, (String, Vec<usize>)>> {
    use std::io::Read;
    let bad = |reason: String| {
        CliError::Input(format!(
            "{}: not a safetensors file: {reason}",
            path.display()
        ))
    };
    let mut f = std::fs::File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(len);
    if n > file_len.saturating_sub(8) || n > 100_000_000 {
        return Err(bad(format!(
            "header length {n} exceeds the file size {file_len}"
        )));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(|e| bad(e.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Info {
        dtype: String,
        shape: Vec<usize>,
    }
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&buf).map_err(|e| bad(format!("bad JSON header: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        if k == "__metadata__" {
            continue;
        }
        let info: Info =
            serde_json::from_value(v).map_err(|e| bad(format!("tensor {k:?}: {e}")))?;
        out.insert(k, (info.dtype, info.shape));
    }
    Ok(out)
}

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

/// The text form of [`inspect`].
pub fn inspect_text(s: &AdapterSummary) -> String {
    let mut t = format!("adapter   {}\n", s.dir.display());
    t += &format!(
        "type      {}{}\n",
        s.peft_type,
        s.task_type
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default()
    );
    if let Some(b) = &s.base_model {
        t += &format!("base      {b}\n");
    }
    t += &format!(
        "rank      r = {}, alpha = {}, scaling = {:.4}{}, dropout = {}\n",
        s.r,
        s.lora_alpha,
        s.scaling,
        if s.use_rslora {
            " (rsLoRA: alpha / sqrt r)"
        } else {
            " (alpha / r)"
        },
        s.lora_dropout
    );
    t += &format!("targets   {}\n", s.target_modules.join(", "));
    if !s.modules_to_save.is_empty() {
        t += &format!("saved     {} (full copies)\n", s.modules_to_save.join(", "));
    }
    t += &format!(
        "params    {} ({} LoRA A/B in {} modules + {} saved-module)\n",
        s.parameters,
        s.lora_parameters,
        s.adapted.len(),
        s.saved_module_parameters
    );
    t += &format!(
        "dtypes    {}\n",
        s.dtypes
            .iter()
            .map(|(k, v)| format!("{k} x {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    t += &format!("size      {} on disk\n", human_bytes(s.size_bytes));
    t += "modules:\n";
    for m in &s.adapted {
        t += &format!(
            "  {}  [{} -> {}], r = {}\n",
            m.path, m.in_features, m.out_features, m.rank
        );
    }
    t
}
