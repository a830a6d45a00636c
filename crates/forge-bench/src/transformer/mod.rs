//! The transformer scenarios: pretrained encoders fine-tuned on real text with forge-models'
//! training API ([`forge_models::train`]), adapted with forge-lora, measured with forge-carbon.
//!
//! - [`Sst2FullVsLora`] (`sst2-full-vs-lora`): full fine-tuning vs LoRA r 4 and r 8 on
//!   query/value (Hu et al. 2021) on GLUE SST-2 (Socher et al. 2013): dev accuracy, trainable
//!   parameters, adapter / checkpoint bytes on disk, wall time, energy and CO2.
//!
//! They need a model folder ([`RunContext::model_dir`](crate::RunContext), `--model` /
//! `FORGE_MODEL`) and the text data ([`RunContext::text_data_dir`](crate::RunContext),
//! `--text-data-dir` / `FORGE_TEXT_DATA_DIR`, layout `sst2/{train,dev}.tsv`); without them the
//! default selection skips them and says what to set. They are never part of the default
//! `--quick` selection; named explicitly in quick mode (`cargo xtask demo --quick --scenario
//! sst2-full-vs-lora --seeds 1`) they run at smoke size ([`TextSizes::for_mode`]), which is what
//! CI gates.
//!
//! Each training is measured exactly once ([`MeasurePolicy::Once`](crate::schema::MeasurePolicy)
//! and [`RunContext::measure_once`](crate::RunContext::measure_once)): loading the weights,
//! injecting the adapter and the epochs of training; the evaluation and the storage
//! measurement are outside the window.

mod sst2_lora;
pub mod storage;
pub mod strategy;

pub use sst2_lora::{Sst2FullVsLora, SST2_FULL_VS_LORA};
pub use strategy::FineTune;

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, Registry, RunContext};
use forge_data::{Budget, TextSplit};
use forge_models::train::{derive_seed, TextDataset};
use forge_models::{ModelFiles, TextTokenizer};

/// Registers the transformer scenarios.
///
/// # Errors
/// [`BenchError::InvalidConfig`] if a name is taken (a bug).
pub fn register(r: &mut Registry) -> Result<()> {
    r.register(Box::new(Sst2FullVsLora::new()))?;
    Ok(())
}

/// The data and training budget of a text scenario in one run mode.
///
/// | mode | train sentences | eval sentences | epochs | max length | batch |
/// |---|---|---|---|---|---|
/// | quick (smoke, CI) | 200 | 200 (fixed subset of dev) | 1 | 32 | 8 |
/// | standard | 600 | the whole dev set (872) | 3 | 64 | 16 |
/// | full | 2,000 | the whole dev set | 3 | 64 | 16 |
///
/// Standard is the seed's size (600 SST-2 sentences, 3 epochs); full is the size of the
/// training parity recipe (docs/training-parity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSizes {
    /// Training sentences, a class-stratified sample drawn per seed.
    pub n_train: usize,
    /// Evaluation sentences: a fixed (seed-independent) stratified subset of the dev set, or
    /// the whole dev set (`None`, or a dev set no larger than this).
    pub n_eval: Option<usize>,
    /// Passes over the training sentences.
    pub epochs: usize,
    /// Longest sequence in tokens.
    pub max_length: usize,
    /// Sentences per optimizer step.
    pub batch_size: usize,
}

impl TextSizes {
    /// The sizes of `mode` (table above).
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Quick => Self {
                n_train: 200,
                n_eval: Some(200),
                epochs: 1,
                max_length: 32,
                // 25 optimizer steps instead of 13: the smoke shows learning at the same compute.
                batch_size: 8,
            },
            Mode::Standard => Self {
                n_train: 600,
                n_eval: None,
                epochs: 3,
                max_length: 64,
                batch_size: 16,
            },
            Mode::Full => Self {
                n_train: 2000,
                n_eval: None,
                epochs: 3,
                max_length: 64,
                batch_size: 16,
            },
        }
    }
}

/// Independent random streams of a text trial, derived from the run seed with
/// [`derive_seed`].
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum TextStream {
    /// The training-sentence sample.
    TrainSample = 1,
}

/// The seed of the evaluation subset: fixed, so that every seed and strategy is scored on the
/// same sentences.
const EVAL_SUBSET_SEED: u64 = 0x5EED_0E7A;

/// The model folder's files and tokenizer, from `ctx`.
///
/// # Errors
/// [`BenchError::MissingResource`] naming what to set when the context has no model folder or
/// the folder has no `tokenizer.json`; forge-models errors for a bad folder.
pub(crate) fn model_and_tokenizer(
    scenario: &str,
    ctx: &RunContext,
    max_length: usize,
) -> Result<(ModelFiles, TextTokenizer)> {
    let missing = |reason: String| BenchError::MissingResource {
        scenario: scenario.into(),
        reason,
    };
    let dir = ctx.model_dir.as_ref().ok_or_else(|| {
        missing(
            "needs a transformer model (--model / FORGE_MODEL: a local folder or a Hub id)".into(),
        )
    })?;
    let files = ModelFiles::from_dir(dir)?;
    let tok = match &files.tokenizer {
        Some(path) => TextTokenizer::from_file(path, max_length)?,
        None => {
            return Err(missing(format!(
                "needs a tokenizer.json in the model folder {}",
                dir.display()
            )))
        }
    };
    Ok((files, tok))
}

/// SST-2 from `ctx`'s text-data folder, tokenised: `sizes.n_train` training sentences (a
/// class-stratified sample drawn with `seed`) and the evaluation sentences (see
/// [`TextSizes::n_eval`]). Returns `(train, eval)`.
///
/// # Errors
/// [`BenchError::MissingResource`] without a text-data folder; forge-data errors naming the
/// file (missing, malformed, fewer sentences than asked for); tokenizer errors.
pub(crate) fn sst2_splits(
    scenario: &str,
    ctx: &RunContext,
    sizes: &TextSizes,
    tok: &TextTokenizer,
    seed: u64,
) -> Result<(TextDataset, TextDataset)> {
    let dir = ctx
        .text_data_dir
        .as_ref()
        .ok_or_else(|| BenchError::MissingResource {
            scenario: scenario.into(),
            reason: "needs the text data sets (--text-data-dir / FORGE_TEXT_DATA_DIR)".into(),
        })?;
    let train = forge_data::sst2(dir, TextSplit::Train)?.subsample(
        Budget::Count(sizes.n_train),
        derive_seed(seed, TextStream::TrainSample as u64),
    )?;
    let dev = forge_data::sst2(dir, TextSplit::Eval)?;
    let dev = match sizes.n_eval {
        Some(n) if n < dev.len() => dev.subsample(Budget::Count(n), EVAL_SUBSET_SEED)?,
        _ => dev,
    };
    Ok((tokenise(&train, tok)?, tokenise(&dev, tok)?))
}

/// forge-data's labelled texts as forge-models' tokenised training set.
fn tokenise(d: &forge_data::TextDataset, tok: &TextTokenizer) -> Result<TextDataset> {
    let labels: Vec<u32> = d
        .labels
        .iter()
        .map(|&l| u32::try_from(l).unwrap_or(u32::MAX))
        .collect();
    Ok(TextDataset::new(&d.texts, &labels, tok)?)
}
