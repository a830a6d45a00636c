//! Hooks into the training loop: [`Penalty`] terms added to the loss (how EWC plugs in) and
//! [`Callback`]s on step / epoch / end events (carbon tracking, progress bars, online monitors),
//! so that forge-models depends on none of them.

use super::history::{EpochRecord, History};
use super::metrics::EvalMetrics;
use candle_core::Tensor;

/// A differentiable scalar added to the training loss at every step, e.g. the EWC penalty
/// `(lambda / 2) sum_i F_i (theta_i - theta*_i)^2` (Kirkpatrick et al. 2017) over the vars it
/// holds. Implemented for closures `Fn() -> candle_core::Result<Tensor>`.
pub trait Penalty {
    /// The penalty, a scalar tensor (shape `[]`) in the graph of the parameters it depends on.
    ///
    /// # Errors
    /// Candle errors.
    fn penalty(&self) -> candle_core::Result<Tensor>;
    /// A name for logs and the history (`"penalty"` for closures).
    fn name(&self) -> String {
        "penalty".into()
    }
}

impl<F: Fn() -> candle_core::Result<Tensor>> Penalty for F {
    fn penalty(&self) -> candle_core::Result<Tensor> {
        self()
    }
}

/// What a callback asks the loop to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after this event (the history records the reason).
    Stop {
        /// Why, for the history.
        reason: String,
    },
}

/// After every optimizer step.
#[derive(Clone, Debug)]
pub struct StepEvent {
    /// Optimizer steps taken so far (1 after the first).
    pub step: usize,
    /// Total optimizer steps planned.
    pub total_steps: usize,
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss of the step's examples (task loss, penalties excluded).
    pub loss: f64,
    /// Sum of the penalty terms at this step (0 without penalties).
    pub penalty: f64,
    /// Learning rate of the first group for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Examples seen so far.
    pub examples: usize,
}

/// The training loop's callbacks. Every method has a default that does nothing.
pub trait Callback {
    /// Before the first step; `total_steps` optimizer steps are planned.
    fn on_start(&mut self, _total_steps: usize) {}
    /// After each optimizer step.
    fn on_step(&mut self, _event: &StepEvent) -> Control {
        Control::Continue
    }
    /// After each epoch (and its evaluation, if any). Add named scalars (energy, CO2) to
    /// `record.scalars`.
    fn on_epoch(&mut self, _record: &mut EpochRecord) -> Control {
        Control::Continue
    }
    /// After each evaluation on the validation set.
    fn on_evaluate(&mut self, _epoch: usize, _metrics: &EvalMetrics) -> Control {
        Control::Continue
    }
    /// At the end (also after a stop). Add run totals to `history.scalars`.
    fn on_end(&mut self, _history: &mut History) {}
}

impl<C: Callback + ?Sized> Callback for &mut C {
    fn on_start(&mut self, total_steps: usize) {
        (**self).on_start(total_steps)
    }
    fn on_step(&mut self, event: &StepEvent) -> Control {
        (**self).on_step(event)
    }
    fn on_epoch(&mut self, record: &mut EpochRecord) -> Control {
        (**self).on_epoch(record)
    }
    fn on_evaluate(&mut self, epoch: usize, metrics: &EvalMetrics) -> Control {
        (**self).on_evaluate(epoch, metrics)
    }
    fn on_end(&mut self, history: &mut History) {
        (**self).on_end(history)
    }
}

/// The penalties and callbacks of one run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Terms added to the loss.
    pub penalties: Vec<Box<dyn Penalty + 'a>>,
    /// Event listeners, called in order.
    pub callbacks: Vec<Box<dyn Callback + 'a>>,
}

impl<'a> Hooks<'a> {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a penalty.
    pub fn penalty(mut self, p: impl Penalty + 'a) -> Self {
        self.penalties.push(Box::new(p));
        self
    }

    /// Add a callback.
    pub fn callback(mut self, c: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(c));
        self
    }

    /// Add a penalty to an existing set.
    pub fn push_penalty(&mut self, p: impl Penalty + 'a) {
        self.penalties.push(Box::new(p));
    }

    /// Add a callback to an existing set.
    pub fn push_callback(&mut self, c: impl Callback + 'a) {
        self.callbacks.push(Box::new(c));
    }

    pub(crate) fn each(&mut self, mut f: impl FnMut(&mut dyn Callback) -> Control) -> Control {
        let mut out = Control::Continue;
        for c in &mut self.callbacks {
            if let Control::Stop { reason } = f(c.as_mut()) {
                if out == Control::Continue {
                    out = Control::Stop { reason };
                }
            }
        }
        out
    }
}
