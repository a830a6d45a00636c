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

mod agnews_ewc;
mod cka_layers;
mod dl_gate;
mod lora_soup;
mod merging;
pub mod shared;
mod sst2_lora;
pub mod storage;
pub mod strategy;

pub use agnews_ewc::{Sst2ToAgNews, SST2_TO_AGNEWS};
pub use cka_layers::{CkaLayers, CKA_LAYERS};
pub use dl_gate::{DlGate, DL_GATE};
pub use lora_soup::{Sst2LoraSoup, SST2_LORA_SOUP};
pub use merging::{Sst2Merge, SST2_MERGE};
pub use sst2_lora::{Sst2FullVsLora, SST2_FULL_VS_LORA};
pub use strategy::FineTune;

use crate::error::{BenchError, Result};
use crate::scenario::{Mode, Registry, RunContext};
use forge_models::train::TextDataset;
use forge_models::{ModelFiles, TextTokenizer};

/// Registers the transformer scenarios.
///
/// # Errors
/// [`BenchError::InvalidConfig`] if a name is taken (a bug).
pub fn register(r: &mut Registry) -> Result<()> {
    r.register(Box::new(Sst2FullVsLora::new()))?;
    r.register(Box::new(Sst2ToAgNews::new()))?;
    r.register(Box::new(Sst2Merge::new()))?;
    r.register(Box::new(Sst2LoraSoup::new()))?;
    r.register(Box::new(CkaLayers::new()))?;
    r.register(Box::new(DlGate::new()))?;
    Ok(())
}

/// The data and training budget of a text scenario in one run mode.
///
/// | mode | SST-2 train | SST-2 eval | AG News train | AG News eval | epochs | max length | batch |
/// |---|---|---|---|---|---|---|---|
/// | quick (smoke, CI) | 200 | 200 (fixed subset of dev) | 200 | 200 (fixed subset of test) | 1 | 32 | 8 |
/// | standard | 600 | the whole dev set (872) | 400 | 1,000 | 3 | 64 | 16 |
/// | full | 2,000 | the whole dev set | 2,000 | 2,000 | 3 | 64 | 16 |
///
/// Standard is the seed's size (600 SST-2 sentences, 400 AG News sentences, 3 epochs); full is
/// the size of the training parity recipe (docs/training-parity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextSizes {
    /// Training sentences, a class-stratified sample drawn per seed.
    pub n_train: usize,
    /// Evaluation sentences: a fixed (seed-independent) stratified subset of the dev set, or
    /// the whole dev set (`None`, or a dev set no larger than this).
    pub n_eval: Option<usize>,
    /// AG News training sentences, a class-stratified sample drawn per seed.
    pub n_train_agnews: usize,
    /// AG News evaluation sentences: a fixed stratified subset of the test set.
    pub n_eval_agnews: usize,
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
                n_train_agnews: 200,
                n_eval_agnews: 200,
                epochs: 1,
                max_length: 32,
                // 25 optimizer steps instead of 13: the smoke shows learning at the same compute.
                batch_size: 8,
            },
            Mode::Standard => Self {
                n_train: 600,
                n_eval: None,
                n_train_agnews: 400,
                n_eval_agnews: 1000,
                epochs: 3,
                max_length: 64,
                batch_size: 16,
            },
            Mode::Full => Self {
                n_train: 2000,
                n_eval: None,
                n_train_agnews: 2000,
                n_eval_agnews: 2000,
                epochs: 3,
                max_length: 64,
                batch_size: 16,
            },
        }
    }
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
/// As [`shared::task_data`].
pub(crate) fn sst2_splits(
    scenario: &str,
    ctx: &RunContext,
    sizes: &TextSizes,
    tok: &TextTokenizer,
    seed: u64,
) -> Result<(TextDataset, TextDataset)> {
    let d = shared::task_data(scenario, ctx, shared::Task::Sst2, sizes, tok, seed)?;
    Ok((d.train, d.eval))
}

/// forge-data's labelled texts as forge-models' tokenised training set.
pub(crate) fn tokenise(d: &forge_data::TextDataset, tok: &TextTokenizer) -> Result<TextDataset> {
    let labels: Vec<u32> = d
        .labels
        .iter()
        .map(|&l| u32::try_from(l).unwrap_or(u32::MAX))
        .collect();
    Ok(TextDataset::new(&d.texts, &labels, tok)?)
}
