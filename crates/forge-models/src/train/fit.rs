//! The training loop: [`fine_tune`], [`train_epoch`], [`evaluate`], and the [`GroupPlan`] that
//! chooses the trainable parameters and their optimizer groups each epoch.

use super::config::TrainConfig;
use super::data::TextDataset;
use super::history::{EpochRecord, History};
use super::hooks::{Control, Hooks, StepEvent};
use super::loss::cross_entropy_loss;
use super::metrics::{accuracy, confusion_matrix, macro_f1, EvalMetrics};
use super::optim::{clip_grad_norm, default_groups, grad_norm, AdamW, AdamWParams, ParamGroup};
use super::schedule::lr_factor;
use crate::{ModelError, Result, SequenceClassifier};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use forge_lora::LoraModel;
use std::time::Instant;

/// Seed streams derived from [`TrainConfig::seed`] (so that shuffling and dropout do not share
/// a sequence).
const SHUFFLE_STREAM: u64 = 1;
const DROPOUT_STREAM: u64 = 2;

/// A seed for one purpose (`stream`) derived from a run seed (SplitMix64 finaliser), so that
/// streams are decorrelated and reproducible.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chooses which parameters train, and in which optimizer groups, at the start of each epoch
/// (e.g. [`crate::transfer::TransferScheduler`]'s gradual unfreezing).
pub trait GroupPlan<M: ?Sized> {
    /// The groups for `epoch` (0-based), after freezing / unfreezing `model` as needed; `None`
    /// keeps the current groups. Called with `epoch = 0` before the first step.
    ///
    /// # Errors
    /// As the implementation documents.
    fn groups(
        &mut self,
        model: &mut M,
        epoch: usize,
        config: &TrainConfig,
    ) -> Result<Option<Vec<ParamGroup>>>;
}

/// Every trainable parameter at `config.learning_rate`, weight decay `config.weight_decay`
/// except biases and layer-norm weights (Hugging Face's Trainer), fixed for the whole run.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultGroups;

impl<M: LoraModel + ?Sized> GroupPlan<M> for DefaultGroups {
    fn groups(
        &mut self,
        model: &mut M,
        epoch: usize,
        config: &TrainConfig,
    ) -> Result<Option<Vec<ParamGroup>>> {
        Ok((epoch == 0).then(|| default_groups(model, config.learning_rate, config.weight_decay)))
    }
}

/// Fixed groups given up front (e.g. [`super::lora_plus_param_groups`] or hand-made
/// discriminative learning rates).
#[derive(Clone, Debug)]
pub struct FixedGroups(pub Vec<ParamGroup>);

impl<M: ?Sized> GroupPlan<M> for FixedGroups {
    fn groups(
        &mut self,
        _model: &mut M,
        epoch: usize,
        _config: &TrainConfig,
    ) -> Result<Option<Vec<ParamGroup>>> {
        Ok((epoch == 0).then(|| self.0.clone()))
    }
}

/// The optimizer and the position in the schedule.
pub struct Optimization {
    /// AdamW over the current groups.
    pub optimizer: AdamW,
    /// Optimizer steps taken.
    pub step: usize,
    /// Optimizer steps planned.
    pub total_steps: usize,
    /// Warmup steps.
    pub warmup_steps: usize,
}

impl Optimization {
    /// AdamW over `groups` with the constants of `config`, for `n_train` examples.
    ///
    /// # Errors
    /// [`ModelError::TrainConfig`].
    pub fn new(groups: Vec<ParamGroup>, config: &TrainConfig, n_train: usize) -> Result<Self> {
        let total_steps = config.epochs * config.steps_per_epoch(n_train);
        Ok(Self {
            optimizer: AdamW::new(
                groups,
                AdamWParams {
                    beta1: config.adam_beta1,
                    beta2: config.adam_beta2,
                    eps: config.adam_epsilon,
                },
            )?,
            step: 0,
            total_steps,
            warmup_steps: config.warmup_steps(total_steps),
        })
    }

    /// The schedule's multiplier for the next step.
    pub fn lr_factor(&self, config: &TrainConfig) -> f64 {
        lr_factor(
            config.schedule,
            self.step,
            self.total_steps,
            self.warmup_steps,
        )
    }
}

/// What one epoch of training did.
#[derive(Clone, Debug)]
pub struct EpochStats {
    /// Mean task loss over the epoch's examples.
    pub train_loss: f64,
    /// Mean penalty per optimizer step.
    pub penalty: f64,
    /// Learning rate of the first group at the last step.
    pub lr: f64,
    /// The task loss of each optimizer step.
    pub step_losses: Vec<f64>,
    /// A callback asked to stop.
    pub control: Control,
}

fn device_of<M: LoraModel + ?Sized>(model: &mut M) -> Result<Device> {
    forge_lora::named_base_params_mut(model)
        .first()
        .map(|(_, p)| p.var().device().clone())
        .ok_or(ModelError::InvalidInput {
            what: "model",
            reason: "the model has no parameters".into(),
        })
}

fn only_vars(mut grads: GradStore, vars: &[Var]) -> GradStore {
    let mut out = empty_store();
    for v in vars {
        if let Some(g) = grads.remove(v) {
            out.insert(v, g);
        }
    }
    out
}

fn empty_store() -> GradStore {
    GradStore::default()
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One epoch: seeded shuffle (`derive_seed(config.seed, 1)` advanced by the epoch), micro-batches
/// of `config.batch_size` padded to their longest sequence, mean cross-entropy plus the
/// penalties, gradients summed over `gradient_accumulation_steps` micro-batches (each loss
/// divided by their number), clipping to `max_grad_norm`, an AdamW step at the scheduled
/// learning rate, then the step callbacks. The model must be in training mode (see
/// [`fine_tune`], which also seeds dropout).
///
/// # Errors
/// [`ModelError::Diverged`] naming the step when the loss or the gradients are NaN or
/// infinite; [`ModelError::InvalidInput`] for labels out of range; candle errors.
pub fn train_epoch<M: SequenceClassifier + ?Sized>(
    model: &M,
    data: &TextDataset,
    epoch: usize,
    config: &TrainConfig,
    opt: &mut Optimization,
    hooks: &mut Hooks<'_>,
) -> Result<EpochStats> {
    let device = data_device(opt)?;
    let order = data.order(Some(derive_seed(
        derive_seed(config.seed, SHUFFLE_STREAM),
        epoch as u64,
    )));
    let micro: Vec<&[usize]> = order.chunks(config.batch_size).collect();
    let vars = opt.optimizer.vars();
    let mut stats = EpochStats {
        train_loss: 0.0,
        penalty: 0.0,
        lr: 0.0,
        step_losses: vec![],
        control: Control::Continue,
    };
    let mut seen = 0usize;
    for group in micro.chunks(config.gradient_accumulation_steps) {
        let k = group.len() as f64;
        let mut acc: Option<GradStore> = None;
        let (mut step_loss, mut step_pen, mut step_n) = (0.0f64, 0.0f64, 0usize);
        for idx in group {
            let batch = data.batch(idx, config.max_length, &device)?;
            let logits = model.forward(&batch.input_ids, Some(&batch.attention_mask))?;
            let loss = cross_entropy_loss(&logits, &batch.labels)?;
            let lv = scalar(&loss)?;
            if !lv.is_finite() {
                return Err(ModelError::Diverged {
                    what: format!("training loss ({lv}) at step {}", opt.step + 1),
                });
            }
            let mut total = loss;
            for p in &hooks.penalties {
                let pt = p.penalty()?;
                let pv = scalar(&pt)?;
                if !pv.is_finite() {
                    return Err(ModelError::Diverged {
                        what: format!("penalty {:?} ({pv}) at step {}", p.name(), opt.step + 1),
                    });
                }
                step_pen += pv / k;
                total = (total + pt)?;
            }
            let total = if k > 1.0 { (total / k)? } else { total };
            let g = only_vars(total.backward()?, &vars);
            match acc.as_mut() {
                None => acc = Some(g),
                Some(a) => a.extend(g)?,
            }
            step_loss += lv * batch.size as f64;
            step_n += batch.size;
        }
        let mut grads = acc.unwrap_or_else(empty_store);
        let norm = match config.max_grad_norm {
            Some(m) => clip_grad_norm(&mut grads, &vars, m)?,
            None => grad_norm(&grads, &vars)?,
        };
        let factor = opt.lr_factor(config);
        opt.optimizer.step(&grads, factor)?;
        opt.step += 1;
        seen += step_n;
        let lr = opt.optimizer.groups().first().map_or(0.0, |g| g.lr) * factor;
        let mean = step_loss / step_n.max(1) as f64;
        stats.train_loss += step_loss;
        stats.penalty += step_pen;
        stats.lr = lr;
        stats.step_losses.push(mean);
        let ev = StepEvent {
            step: opt.step,
            total_steps: opt.total_steps,
            epoch,
            loss: mean,
            penalty: step_pen,
            lr,
            grad_norm: norm,
            examples: seen,
        };
        if let c @ Control::Stop { .. } = hooks.each(|cb| cb.on_step(&ev)) {
            stats.control = c;
            break;
        }
    }
    stats.train_loss /= seen.max(1) as f64;
    stats.penalty /= stats.step_losses.len().max(1) as f64;
    Ok(stats)
}

fn data_device(opt: &Optimization) -> Result<Device> {
    Ok(opt
        .optimizer
        .groups()
        .iter()
        .flat_map(|g| g.vars.first())
        .next()
        .map_or(Device::Cpu, |v| v.device().clone()))
}

/// Loss, accuracy, macro-F1 and confusion matrix on `data` in evaluation mode (dropout off;
/// the previous mode is restored), in batches of `config.eval_batch_size` sequences of similar
/// length (sorted by length: less padding, the same predictions) truncated to
/// `config.max_length`, inside [`forge_lora::no_grad`] (no backward graph is recorded).
///
/// # Errors
/// [`ModelError::InvalidInput`] for an empty set or labels outside the head's classes; candle
/// errors.
pub fn evaluate<M: SequenceClassifier + ?Sized>(
    model: &mut M,
    data: &TextDataset,
    config: &TrainConfig,
) -> Result<EvalMetrics> {
    let c = model.num_labels();
    data.check_labels("evaluation", c)?;
    let device = device_of(model)?;
    let was = model.is_training();
    model.set_training(false);
    let started = std::time::Instant::now();
    let out = (|| -> Result<EvalMetrics> {
        let mut loss = 0.0;
        let mut pred = vec![0u32; data.len()];
        // Batches of similar lengths: a batch is padded to its longest sequence, and the
        // predictions do not depend on which sequences share a batch (the padding is masked),
        // so sorting by length removes most of the padding (SST-2 dev at 64 per batch: 44k
        // padded tokens in file order, 24k sorted, for 22k real ones).
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.sort_by_key(|&i| data.ids(i).map_or(0, <[u32]>::len));
        for idx in order.chunks(config.eval_batch_size.max(1)) {
            let b = data.batch(idx, config.max_length, &device)?;
            // no graph: nothing of the forward is kept for a backward pass
            let logits =
                forge_lora::no_grad(|| model.forward(&b.input_ids, Some(&b.attention_mask)))?;
            loss += scalar(&cross_entropy_loss(&logits, &b.labels)?)? * b.size as f64;
            for (&i, p) in idx.iter().zip(logits.argmax(1)?.to_vec1::<u32>()?) {
                pred[i] = p;
            }
        }
        let cm = confusion_matrix(data.labels(), &pred, c);
        Ok(EvalMetrics {
            loss: loss / data.len() as f64,
            accuracy: accuracy(&cm),
            macro_f1: macro_f1(&cm),
            confusion: cm,
            n: data.len(),
        })
    })();
    model.set_training(was);
    tracing::debug!(
        sequences = data.len(),
        seconds = started.elapsed().as_secs_f64(),
        "evaluated"
    );
    out
}

/// Fine-tune a sequence classifier with [`DefaultGroups`] (all trainable parameters, Hugging
/// Face's weight-decay exemptions). See [`fine_tune_with`].
///
/// # Errors
/// As [`fine_tune_with`].
pub fn fine_tune<M: SequenceClassifier + ?Sized>(
    model: &mut M,
    train: &TextDataset,
    val: Option<&TextDataset>,
    config: &TrainConfig,
    hooks: &mut Hooks<'_>,
) -> Result<History> {
    fine_tune_with(model, train, val, config, hooks, &mut DefaultGroups)
}

/// Fine-tune a sequence classifier: `config.epochs` epochs of [`train_epoch`] with AdamW, the
/// learning-rate schedule over all steps, evaluation on `val` every `config.eval_every_epochs`
/// epochs (and after the last), early stopping on the validation loss, callbacks and penalties
/// from `hooks`, and the groups chosen by `plan` at the start of each epoch. Dropout masks and
/// shuffling are seeded from `config.seed`: two runs with the same seed, model and data give
/// bit-identical losses on the same machine. The model is left in evaluation mode.
///
/// # Errors
/// [`ModelError::TrainConfig`] for an invalid config; [`ModelError::InvalidInput`] for an empty
/// training or validation set (`what = "dataset"`), labels the head cannot represent
/// (`what = "num_labels"` when the labels imply more classes than the head has, `"labels"`
/// otherwise) or a model without trainable parameters; [`ModelError::Diverged`] when training
/// diverges; candle errors.
pub fn fine_tune_with<M: SequenceClassifier + ?Sized, P: GroupPlan<M> + ?Sized>(
    model: &mut M,
    train: &TextDataset,
    val: Option<&TextDataset>,
    config: &TrainConfig,
    hooks: &mut Hooks<'_>,
    plan: &mut P,
) -> Result<History> {
    config.validate()?;
    let heads = model.num_labels();
    for (name, d) in [("training", Some(train)), ("validation", val)] {
        let Some(d) = d else { continue };
        if d.is_empty() {
            return Err(ModelError::InvalidInput {
                what: "dataset",
                reason: format!("the {name} set is empty"),
            });
        }
        if d.implied_num_labels() > heads {
            return Err(ModelError::InvalidInput {
                what: "num_labels",
                reason: format!(
                    "the {name} labels imply {} classes but the model head has {heads}; replace the head (forge_models::transfer::replace_head)",
                    d.implied_num_labels()
                ),
            });
        }
        d.check_labels(name, heads)?;
    }
    let start = Instant::now();
    crate::dropout::set_dropout_seed(derive_seed(config.seed, DROPOUT_STREAM));
    let mut history = History::new(config.clone());
    let groups = plan.groups(model, 0, config)?.unwrap_or_default();
    if groups.iter().all(|g| g.vars.is_empty()) {
        return Err(ModelError::InvalidInput {
            what: "model",
            reason: "no trainable parameters (everything is frozen)".into(),
        });
    }
    history.trainable_parameters = forge_lora::count_parameters(model).trainable;
    let mut opt = Optimization::new(groups, config, train.len())?;
    let total = opt.total_steps;
    for cb in &mut hooks.callbacks {
        cb.on_start(total);
    }
    let (mut best, mut bad_evals) = (f64::INFINITY, 0usize);
    for epoch in 0..config.epochs {
        let t0 = Instant::now();
        if epoch > 0 {
            if let Some(g) = plan.groups(model, epoch, config)? {
                opt.optimizer.set_groups(g)?;
            }
        }
        model.set_training(true);
        let stats = train_epoch(model, train, epoch, config, &mut opt, hooks)?;
        model.set_training(false);
        history.step_losses.extend(&stats.step_losses);
        let mut control = stats.control.clone();
        let last = epoch + 1 == config.epochs || control != Control::Continue;
        let val_metrics = match val {
            Some(v) if last || (epoch + 1) % config.eval_every_epochs == 0 => {
                let m = evaluate(model, v, config)?;
                if let c @ Control::Stop { .. } = hooks.each(|cb| cb.on_evaluate(epoch, &m)) {
                    control = c;
                }
                if m.loss < best {
                    best = m.loss;
                    bad_evals = 0;
                    history.best_epoch = Some(epoch);
                } else {
                    bad_evals += 1;
                    if let (Some(p), Control::Continue) = (config.early_stopping_patience, &control)
                    {
                        if bad_evals >= p {
                            control = Control::Stop {
                                reason: format!(
                                    "early stopping: no lower validation loss in {bad_evals} evaluations (best {best:.4} at epoch {:?})",
                                    history.best_epoch
                                ),
                            };
                        }
                    }
                }
                Some(m)
            }
            _ => None,
        };
        let mut rec = EpochRecord {
            epoch,
            train_loss: stats.train_loss,
            penalty: stats.penalty,
            lr: stats.lr,
            val: val_metrics,
            wall_seconds: t0.elapsed().as_secs_f64(),
            scalars: Default::default(),
        };
        if let c @ Control::Stop { .. } = hooks.each(|cb| cb.on_epoch(&mut rec)) {
            if control == Control::Continue {
                control = c;
            }
        }
        tracing::info!(
            epoch,
            train_loss = rec.train_loss,
            val_loss = rec.val.as_ref().map(|m| m.loss),
            val_accuracy = rec.val.as_ref().map(|m| m.accuracy),
            "epoch done"
        );
        history.epochs.push(rec);
        if let Control::Stop { reason } = control {
            history.stopped = Some(reason);
            break;
        }
    }
    history.steps = opt.step;
    history.wall_seconds = start.elapsed().as_secs_f64();
    for cb in &mut hooks.callbacks {
        cb.on_end(&mut history);
    }
    Ok(history)
}
