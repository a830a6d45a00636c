//! What the transformer scenarios share within one process: the fine-tuned models they build on.
//!
//! Full fine-tuning on SST-2 is the baseline of `sst2-full-vs-lora`, the source of the EWC
//! scenario, one of the merged models and a CKA subject. Training it again for each would cost
//! minutes per seed, so a trained model is kept in a process-wide cache, keyed by everything that
//! determines it (model folder, task, seed, data sizes, learning rate), together with the
//! measurement of the one training that produced it. A scenario that finds its model in the cache
//! reports that measurement (the cost was paid once, in this run); one run alone trains the model
//! itself. Models are deep copies: a scenario may change its copy freely.

use super::strategy::FineTune;
use super::{model_and_tokenizer, tokenise, TextSizes};
use crate::error::{BenchError, Result};
use crate::scenario::RunContext;
use crate::schema::Measurement;
use candle_core::{Tensor, Var};
use forge_data::{Budget, TextSplit};
use forge_lora::{DeepClone, LoraConfig, LoraInjector};
use forge_models::representations::Representations;
use forge_models::train::{
    derive_seed, evaluate, fine_tune, Callback, Control, EpochRecord, Hooks, TextDataset,
    TrainConfig,
};
use forge_models::transfer::{replace_head, HF_INIT_STD};
use forge_models::{
    extract_representations, AnyClassifier, Encoded, HiddenStates, LayerSelection, ModelFiles,
    Pooling, SequenceClassifier, TextTokenizer,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

/// What every transformer scenario needs: a model folder and the text data.
pub const MODEL_AND_TEXT: crate::scenario::Requirements = crate::scenario::Requirements {
    model: true,
    text_data: true,
};

/// How the model was asked for (`--model` / `FORGE_MODEL`), else its folder: the `model` entry
/// of every record's `config`.
pub fn model_id(ctx: &RunContext, files: &ModelFiles) -> String {
    ctx.model_id
        .clone()
        .unwrap_or_else(|| files.dir.display().to_string())
}

/// Sentences per evaluation batch (no backward pass: larger than the training batch).
pub const EVAL_BATCH: usize = 64;

/// The text classification tasks of the scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// GLUE SST-2 (Socher et al. 2013): binary sentiment of movie-review sentences.
    Sst2,
    /// AG News (Zhang et al. 2015): 4-class news topic.
    AgNews,
}

impl Task {
    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Task::Sst2 => 2,
            Task::AgNews => 4,
        }
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst2 => "SST-2",
            Task::AgNews => "AG News",
        }
    }

    /// Training sentences in `sizes`.
    fn n_train(self, sizes: &TextSizes) -> usize {
        match self {
            Task::Sst2 => sizes.n_train,
            Task::AgNews => sizes.n_train_agnews,
        }
    }

    /// Evaluation sentences in `sizes` (`None`: the whole evaluation split).
    fn n_eval(self, sizes: &TextSizes) -> Option<usize> {
        match self {
            Task::Sst2 => sizes.n_eval,
            Task::AgNews => Some(sizes.n_eval_agnews),
        }
    }

    /// The derived-seed stream of this task's training sample (SST-2 keeps the stream of
    /// `sst2-full-vs-lora`, so that every scenario trains on the same sentences).
    fn sample_stream(self) -> u64 {
        match self {
            Task::Sst2 => 1,
            Task::AgNews => 2,
        }
    }

    /// The fixed seed of the evaluation subset.
    fn eval_seed(self) -> u64 {
        match self {
            Task::Sst2 => super::EVAL_SUBSET_SEED,
            Task::AgNews => super::EVAL_SUBSET_SEED + 1,
        }
    }
}

/// A task's tokenised training sample and evaluation set for one seed.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// Training sentences (class-stratified sample drawn with the seed).
    pub train: TextDataset,
    /// Evaluation sentences (fixed across seeds).
    pub eval: TextDataset,
}

/// `task`'s data from `ctx`'s text-data folder (see [`TextSizes`]).
///
/// # Errors
/// [`BenchError::MissingResource`] without a text-data folder; forge-data errors naming the
/// file; tokenizer errors.
pub fn task_data(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    sizes: &TextSizes,
    tok: &TextTokenizer,
    seed: u64,
) -> Result<TaskData> {
    let dir = ctx
        .text_data_dir
        .as_ref()
        .ok_or_else(|| BenchError::MissingResource {
            scenario: scenario.into(),
            reason: "needs the text data sets (--text-data-dir / FORGE_TEXT_DATA_DIR)".into(),
        })?;
    let (train, eval) = match task {
        Task::Sst2 => (
            forge_data::sst2(dir, TextSplit::Train)?,
            forge_data::sst2(dir, TextSplit::Eval)?,
        ),
        Task::AgNews => (
            forge_data::ag_news(dir, TextSplit::Train)?,
            forge_data::ag_news(dir, TextSplit::Eval)?,
        ),
    };
    let train = train.subsample(
        Budget::Count(task.n_train(sizes)),
        derive_seed(seed, task.sample_stream()),
    )?;
    let eval = match task.n_eval(sizes) {
        Some(n) if n < eval.len() => eval.subsample(Budget::Count(n), task.eval_seed())?,
        _ => eval,
    };
    Ok(TaskData {
        train: tokenise(&train, tok)?,
        eval: tokenise(&eval, tok)?,
    })
}

/// The training configuration of the scenarios' fine-tunings at `lr` (the parity recipe of
/// docs/training-parity.md: AdamW, weight decay 0.01, 6% warmup then linear decay, clipping 1).
pub fn train_config(sizes: &TextSizes, lr: f64, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: sizes.epochs,
        batch_size: sizes.batch_size,
        eval_batch_size: EVAL_BATCH,
        max_length: sizes.max_length,
        learning_rate: lr,
        seed,
        ..TrainConfig::default()
    }
}

/// The pretrained encoder of `files` with a new `classes`-way head initialised from `seed`, as
/// transformers does (a head the checkpoint may have is discarded). The checkpoint is read from
/// disk once per process and device; later calls deep-copy it (the copy is independent).
///
/// # Errors
/// forge-models errors (bad folder, bad weights).
pub fn pretrained_with_head(
    files: &ModelFiles,
    classes: usize,
    seed: u64,
    ctx: &RunContext,
) -> Result<AnyClassifier> {
    type Pristine = Mutex<Vec<((PathBuf, String), Arc<AnyClassifier>)>>;
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    let key = (files.dir.clone(), format!("{:?}", ctx.device.location()));
    let cached = {
        let c = PRISTINE
            .get_or_init(|| Mutex::new(Vec::new()))
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.iter().find(|(k, _)| k == &key).map(|(_, m)| m.clone())
    };
    let mut model = match cached {
        Some(m) => m.try_clone_deep()?,
        None => {
            // The seed only initialises a head the checkpoint lacks; it is replaced below.
            let m = AnyClassifier::from_files(files, None, seed, &ctx.device)?;
            let copy = m.try_clone_deep()?;
            PRISTINE
                .get_or_init(|| Mutex::new(Vec::new()))
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key, Arc::new(m)));
            copy
        }
    };
    replace_head(&mut model, classes, HF_INIT_STD, seed)?;
    Ok(model)
}

/// A model fully fine-tuned on one task from the pretrained encoder, with the measurement of
/// the training that produced it.
#[derive(Debug)]
pub struct FineTuned {
    /// The trained model (a deep copy of the cached one).
    pub model: AnyClassifier,
    /// Loading plus training, measured once when it was trained.
    pub training: Measurement,
    /// Accuracy on the task's evaluation set.
    pub accuracy: f64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Whether it came from the cache (trained earlier in this process).
    pub cached: bool,
    /// The LoRA configuration of its adapter (`None`: fully fine-tuned).
    pub lora: Option<LoraConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    model: PathBuf,
    task: Task,
    /// The strategy's name (`full-ft`, `lora-r4`, ...).
    variant: String,
    seed: u64,
    sizes: TextSizes,
    lr_bits: u64,
}

impl Key {
    /// The key of a model derived otherwise (e.g. the SST-2 model trained on AG News), named by
    /// `variant`.
    fn derived(
        files: &ModelFiles,
        task: Task,
        variant: &str,
        sizes: &TextSizes,
        lr: f64,
        seed: u64,
    ) -> Self {
        Self {
            model: files.dir.clone(),
            task,
            variant: variant.into(),
            seed,
            sizes: *sizes,
            lr_bits: lr.to_bits(),
        }
    }

    fn new(
        files: &ModelFiles,
        task: Task,
        strategy: FineTune,
        sizes: &TextSizes,
        lr: f64,
        seed: u64,
    ) -> Self {
        Self {
            model: files.dir.clone(),
            task,
            variant: strategy.name(),
            seed,
            sizes: *sizes,
            lr_bits: lr.to_bits(),
        }
    }
}

struct Entry {
    key: Key,
    model: AnyClassifier,
    lora: Option<LoraConfig>,
    training: Measurement,
    accuracy: f64,
    steps: u64,
    /// Evaluation accuracy before training and after each epoch, when it was computed.
    curve: Option<Vec<f64>>,
    /// Bytes of the model's parameters (f32), what the entry costs the cache.
    bytes: u64,
}

impl Entry {
    /// An entry holding a deep copy of `model`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        key: Key,
        model: &AnyClassifier,
        lora: Option<LoraConfig>,
        training: Measurement,
        accuracy: f64,
        steps: u64,
        curve: Option<Vec<f64>>,
    ) -> Result<Self> {
        let mut model = model.try_clone_deep()?;
        let bytes = 4 * forge_lora::count_parameters(&mut model).total as u64;
        Ok(Self {
            key,
            model,
            lora,
            training,
            accuracy,
            steps,
            curve,
            bytes,
        })
    }
}

/// Environment variable: the most megabytes of model parameters the cache keeps.
pub const CACHE_MB_ENV: &str = "FORGE_MODEL_CACHE_MB";

/// The cache's budget in bytes: [`CACHE_MB_ENV`], else a quarter of the machine's RAM capped at
/// 8 GiB (2 GiB where the RAM is unknown). MiniLM takes ~91 MB a model and a standard seed keeps
/// six (SST-2 full, LoRA r4 and r8, the second SST-2 fine-tuning, AG News, SST-2 then AG News), so
/// three seeds need ~1.6 GB; a model evicted early is trained again when a later scenario asks
/// for it (the run stays correct, only slower).
fn cache_budget() -> u64 {
    const MB: u64 = 1 << 20;
    static BUDGET: OnceLock<u64> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        if let Some(mb) = std::env::var(CACHE_MB_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return mb * MB;
        }
        let ram = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| forge_carbon::process::parse_meminfo_total(&m));
        ram.map_or(2048 * MB, |r| (r / 4).min(8192 * MB))
    })
}

/// Evicts the oldest entries of `entries` until `incoming` more bytes fit in `budget` (always
/// keeps room for the incoming entry itself, even one larger than the budget).
fn evict_for<T>(entries: &mut Vec<T>, bytes: impl Fn(&T) -> u64, incoming: u64, budget: u64) {
    let mut held: u64 = entries.iter().map(&bytes).sum();
    while !entries.is_empty() && held + incoming > budget {
        held -= bytes(&entries.remove(0));
    }
}

fn cache() -> &'static Mutex<Vec<Arc<Entry>>> {
    static CACHE: OnceLock<Mutex<Vec<Arc<Entry>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

fn lookup(key: &Key) -> Option<Arc<Entry>> {
    let c = cache().lock().unwrap_or_else(|p| p.into_inner());
    c.iter().find(|e| &e.key == key).cloned()
}

fn store(entry: Entry) {
    store_arc(Arc::new(entry));
}

fn store_arc(entry: Arc<Entry>) {
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    c.retain(|e| e.key != entry.key);
    evict_for(&mut c, |e| e.bytes, entry.bytes, cache_budget());
    c.push(entry);
}

/// Evaluation accuracies of starting models (the first point of convergence curves), by key.
fn initial_accuracies() -> &'static Mutex<std::collections::HashMap<Key, f64>> {
    static ACC: OnceLock<Mutex<std::collections::HashMap<Key, f64>>> = OnceLock::new();
    ACC.get_or_init(Mutex::default)
}

fn initial_accuracy(key: &Key) -> Option<f64> {
    let m = initial_accuracies()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    m.get(key).copied()
}

fn remember_initial_accuracy(key: Key, accuracy: f64) {
    initial_accuracies()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, accuracy);
}

/// The name under which the SST-2 full fine-tuning trained further on AG News (a new 4-class
/// head, every weight, no penalty) is cached: `sst2-to-agnews`'s `all-at-once` and `dl-gate`'s
/// `from-sst2` are that same training.
pub const SST2_THEN_AGNEWS: &str = "sst2-full-ft-then-agnews";

/// A derived model (one [`fine_tuned`] and [`adapted`] do not build, e.g.
/// [`SST2_THEN_AGNEWS`]) from the cache, when a scenario trained and [`remember_derived`] it
/// earlier in this process.
///
/// # Errors
/// Resource errors; candle errors copying the model.
#[allow(clippy::too_many_arguments)]
pub fn derived(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    variant: &str,
    sizes: &TextSizes,
    lr: f64,
    seed: u64,
) -> Result<Option<FineTuned>> {
    let (files, _) = model_and_tokenizer(scenario, ctx, sizes.max_length)?;
    match lookup(&Key::derived(&files, task, variant, sizes, lr, seed)) {
        Some(e) => {
            tracing::info!(
                "{scenario}: reusing the {variant} model (seed {seed}) trained earlier in this run"
            );
            Ok(Some(FineTuned::of(&e, e.model.try_clone_deep()?, true)?))
        }
        None => Ok(None),
    }
}

/// Keeps a derived model (see [`derived`]) with the measurement of the training that made it.
///
/// # Errors
/// Resource errors; candle errors copying the model.
#[allow(clippy::too_many_arguments)]
pub fn remember_derived(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    variant: &str,
    sizes: &TextSizes,
    lr: f64,
    seed: u64,
    model: &AnyClassifier,
    training: &Measurement,
    accuracy: f64,
    steps: u64,
) -> Result<()> {
    let (files, _) = model_and_tokenizer(scenario, ctx, sizes.max_length)?;
    store(Entry::new(
        Key::derived(&files, task, variant, sizes, lr, seed),
        model,
        None,
        training.clone(),
        accuracy,
        steps,
        None,
    )?);
    Ok(())
}

/// Empties the cache (tests; a caller that wants every training measured afresh).
pub fn clear_cache() {
    cache().lock().unwrap_or_else(|p| p.into_inner()).clear();
    initial_accuracies()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
}

/// The pretrained model of `ctx` fully fine-tuned on `task` (new seeded head, learning rate
/// `lr`, the sizes of `sizes`), from the cache or trained now (loading and training measured
/// once), then evaluated on `data.eval`.
///
/// # Errors
/// Resource, data, training and measurement errors.
pub fn fine_tuned(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    sizes: &TextSizes,
    lr: f64,
    seed: u64,
    data: &TaskData,
) -> Result<FineTuned> {
    adapted(scenario, ctx, task, sizes, FineTune::Full, lr, seed, data)
}

/// [`fine_tuned`] for any [`FineTune`] strategy (full, or a LoRA adapter of a rank; the LoRA
/// configuration of [`FineTune::lora_config`], injected with the seed).
///
/// # Errors
/// As [`fine_tuned`].
#[allow(clippy::too_many_arguments)]
pub fn adapted(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    sizes: &TextSizes,
    strategy: FineTune,
    lr: f64,
    seed: u64,
    data: &TaskData,
) -> Result<FineTuned> {
    let (files, _) = model_and_tokenizer(scenario, ctx, sizes.max_length)?;
    let key = Key::new(&files, task, strategy, sizes, lr, seed);
    if let Some(e) = lookup(&key) {
        // Not recorded in the results (it depends on what else ran in the process, and a
        // sharded run must equal a single one): the reused measurement is identical instead.
        tracing::info!(
            "{scenario}: reusing the {} {} model (seed {seed}) trained earlier in this run",
            task.name(),
            strategy.name()
        );
        return FineTuned::of(&e, e.model.try_clone_deep()?, true);
    }
    let (e, model) = train_entry(ctx, &files, task, sizes, strategy, lr, seed, data, false)?;
    FineTuned::of(&e, model, false)
}

impl FineTuned {
    /// `model` (a copy of `e`'s) with `e`'s measurement and scores.
    fn of(e: &Entry, model: AnyClassifier, cached: bool) -> Result<Self> {
        Ok(Self {
            model,
            training: e.training.clone(),
            accuracy: e.accuracy,
            steps: e.steps,
            cached,
            lora: e.lora.clone(),
        })
    }
}

/// Trains `strategy` (measured), evaluates it, optionally its accuracy curve (unmeasured: from
/// parameter snapshots taken at the start and after each epoch), caches and returns it.
#[allow(clippy::too_many_arguments)]
fn train_entry(
    ctx: &RunContext,
    files: &ModelFiles,
    task: Task,
    sizes: &TextSizes,
    strategy: FineTune,
    lr: f64,
    seed: u64,
    data: &TaskData,
    with_curve: bool,
) -> Result<(Arc<Entry>, AnyClassifier)> {
    let config = train_config(sizes, lr, seed);
    let ((mut model, lora, steps, stopped, snaps), training) = ctx.measure_once(|| {
        let mut model = pretrained_with_head(files, task.classes(), seed, ctx)?;
        let lora = strategy.lora_config(&model);
        if let Some(cfg) = &lora {
            LoraInjector::new(cfg.clone())?
                .with_seed(seed)
                .inject(&mut model)?;
        }
        let snaps = with_curve.then(|| EpochSnapshots::new(&mut model));
        let mut hooks = Hooks::new();
        if let Some(sn) = &snaps {
            hooks.push_callback(sn.callback());
        }
        let history = fine_tune(&mut model, &data.train, None, &config, &mut hooks)?;
        drop(hooks);
        Ok((
            model,
            lora,
            history.steps as u64,
            history.stopped.is_some(),
            snaps,
        ))
    })?;
    let accuracy = evaluate(&mut model, &data.eval, &config)?.accuracy;
    // Every strategy here starts from the same function: the pretrained encoder with the seed's
    // head (a LoRA adapter starts with B = 0, an exact no-op), so the curve's first point is
    // evaluated once per (model, task, seed, sizes) and shared.
    let start_key = Key::derived(files, task, "pretrained-with-head", sizes, 0.0, seed);
    let curve = match &snaps {
        Some(sn) => {
            let curve = sn.accuracy_curve_known(
                &mut model,
                &data.eval,
                &config,
                initial_accuracy(&start_key),
                // the last snapshot is the final model unless training stopped inside an epoch
                (!stopped).then_some(accuracy),
            )?;
            if let Some(&first) = curve.first() {
                remember_initial_accuracy(start_key, first);
            }
            Some(curve)
        }
        None => None,
    };
    model.set_training(false);
    let entry = Arc::new(Entry::new(
        Key::new(files, task, strategy, sizes, lr, seed),
        &model,
        lora,
        training,
        accuracy,
        steps,
        curve,
    )?);
    store_arc(entry.clone());
    Ok((entry, model))
}

/// The evaluation accuracy of `strategy` on `task` before training and after each epoch (the
/// convergence curve), from the cache when the model was trained with its curve in this run,
/// else trained now (deterministic for the seed: the same model as the strategy's own run).
///
/// # Errors
/// As [`fine_tuned`].
#[allow(clippy::too_many_arguments)]
pub fn accuracy_curve(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    sizes: &TextSizes,
    strategy: FineTune,
    lr: f64,
    seed: u64,
    data: &TaskData,
) -> Result<Vec<f64>> {
    let (files, _) = model_and_tokenizer(scenario, ctx, sizes.max_length)?;
    let key = Key::new(&files, task, strategy, sizes, lr, seed);
    if let Some(c) = lookup(&key).and_then(|e| e.curve.clone()) {
        return Ok(c);
    }
    let (e, _) = train_entry(ctx, &files, task, sizes, strategy, lr, seed, data, true)?;
    Ok(e.curve.clone().unwrap_or_default())
}

/// Copies of a run's trainable parameters at its start and after every epoch: the convergence
/// curve is evaluated from them after the measured training, so that measuring it adds only the
/// copies (not evaluations) to the training's energy.
#[derive(Clone)]
pub struct EpochSnapshots {
    vars: Vec<Var>,
    taken: Rc<RefCell<Vec<candle_core::Result<Vec<Tensor>>>>>,
}

struct SnapshotCallback(EpochSnapshots);

impl EpochSnapshots {
    /// Snapshots of `model`'s trainable parameters (call after any injection, before training).
    pub fn new(model: &mut AnyClassifier) -> Self {
        Self {
            vars: forge_lora::trainable_vars(model),
            taken: Rc::default(),
        }
    }

    fn take(&self) {
        let copy = self
            .vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<Vec<_>>>();
        self.taken.borrow_mut().push(copy);
    }

    /// The callback that takes them (at the start and at the end of every epoch).
    pub fn callback(&self) -> impl Callback + 'static {
        SnapshotCallback(self.clone())
    }

    /// Accuracy of `model` on `eval` with each snapshot's parameters, then the parameters the
    /// model had restored.
    ///
    /// # Errors
    /// A snapshot that could not be taken; evaluation errors.
    pub fn accuracy_curve(
        &self,
        model: &mut AnyClassifier,
        eval: &TextDataset,
        config: &TrainConfig,
    ) -> Result<Vec<f64>> {
        self.accuracy_curve_known(model, eval, config, None, None)
    }

    /// [`Self::accuracy_curve`] with the accuracies already known taken as given instead of
    /// evaluated again: `first` (before training: the same starting model as another run's) and
    /// `last` (after the last epoch: the model's current parameters, already evaluated).
    ///
    /// # Errors
    /// As [`Self::accuracy_curve`].
    pub fn accuracy_curve_known(
        &self,
        model: &mut AnyClassifier,
        eval: &TextDataset,
        config: &TrainConfig,
        first: Option<f64>,
        last: Option<f64>,
    ) -> Result<Vec<f64>> {
        let now = self
            .vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let taken = self.taken.borrow();
        let n = taken.len();
        let mut curve = Vec::with_capacity(n);
        for (i, snap) in taken.iter().enumerate() {
            let known = match i {
                0 => first,
                _ if i + 1 == n => last,
                _ => None,
            };
            if let Some(a) = known {
                curve.push(a);
                continue;
            }
            let snap = snap
                .as_ref()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            for (v, t) in self.vars.iter().zip(snap) {
                v.set(t)?;
            }
            curve.push(evaluate(model, eval, config)?.accuracy);
        }
        for (v, t) in self.vars.iter().zip(&now) {
            v.set(t)?;
        }
        Ok(curve)
    }
}

impl Callback for SnapshotCallback {
    fn on_start(&mut self, _total_steps: usize) {
        self.0.take();
    }

    fn on_epoch(&mut self, _record: &mut EpochRecord) -> Control {
        self.0.take();
        Control::Continue
    }
}

/// Registers a model trained elsewhere (by `sst2-full-vs-lora`) under the key [`adapted`]
/// would use for `strategy`, so that later scenarios reuse it.
///
/// # Errors
/// Resource errors; candle errors copying the model.
#[allow(clippy::too_many_arguments)]
pub fn remember(
    scenario: &str,
    ctx: &RunContext,
    task: Task,
    sizes: &TextSizes,
    strategy: FineTune,
    lr: f64,
    seed: u64,
    model: &AnyClassifier,
    lora: Option<&LoraConfig>,
    training: &Measurement,
    accuracy: f64,
    steps: u64,
    curve: Option<Vec<f64>>,
) -> Result<()> {
    let (files, _) = model_and_tokenizer(scenario, ctx, sizes.max_length)?;
    store(Entry::new(
        Key::new(&files, task, strategy, sizes, lr, seed),
        model,
        lora.cloned(),
        training.clone(),
        accuracy,
        steps,
        curve,
    )?);
    Ok(())
}

/// The sum of measurements (wall time, energy per component, CO2).
pub fn sum_measurements(parts: &[&Measurement]) -> Measurement {
    let mut m = parts.first().map(|p| (*p).clone()).unwrap_or_default();
    for p in parts.iter().skip(1) {
        m.wall_time_s += p.wall_time_s;
        m.cpu_kwh += p.cpu_kwh;
        m.ram_kwh += p.ram_kwh;
        m.gpu_kwh += p.gpu_kwh;
        m.total_kwh += p.total_kwh;
        m.co2_kg += p.co2_kg;
    }
    m
}

/// Mean-pooled hidden states of `model`'s encoder on `data`'s sentences (in batches of
/// [`EVAL_BATCH`]), for the hidden states `layers` (0 = the embeddings), on the CPU.
///
/// # Errors
/// forge-models errors (bad batch).
pub fn pooled_features(
    model: &AnyClassifier,
    data: &TextDataset,
    layers: &LayerSelection,
    max_length: usize,
    ctx: &RunContext,
) -> Result<Representations> {
    let idx: Vec<usize> = (0..data.len()).collect();
    let batches: Vec<Encoded> = idx
        .chunks(EVAL_BATCH)
        .map(|c| {
            let b = data.batch(c, max_length, &ctx.device)?;
            Ok(Encoded {
                input_ids: b.input_ids,
                attention_mask: b.attention_mask,
            })
        })
        .collect::<Result<_>>()?;
    let encoder: &dyn HiddenStates = match model {
        AnyClassifier::Bert(m) => &m.bert,
        AnyClassifier::DistilBert(m) => &m.distilbert,
    };
    Ok(extract_representations(
        encoder,
        &batches,
        layers,
        Pooling::Mean,
        |_| {},
    )?)
}

#[cfg(test)]
mod tests {
    use super::evict_for;

    #[test]
    fn eviction_drops_the_oldest_until_the_new_entry_fits() {
        let mut v = vec![40_u64, 30, 20];
        evict_for(&mut v, |b| *b, 25, 100);
        assert_eq!(v, vec![30, 20]); // 90 + 25 > 100: the 40 goes, 50 + 25 fits
        evict_for(&mut v, |b| *b, 50, 100);
        assert_eq!(v, vec![30, 20]); // fits as is
        evict_for(&mut v, |b| *b, 500, 100);
        assert!(v.is_empty()); // larger than the budget: everything else goes, it is still kept
    }
}
