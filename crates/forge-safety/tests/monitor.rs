//! The negative-transfer monitor stops a deliberately harmful fine-tuning run (AdamW at
//! lr 1e-1) of a tiny candle MLP within its patience, warns about its parameter drift, and lets
//! a sane run (lr 1e-3) finish.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{linear, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use forge_linalg::rng::{randn, seeded_rng};
use forge_safety::{parameter_drift, MonitorConfig, MonitorDecision, NegativeTransferMonitor};

const D: usize = 10;
const HIDDEN: usize = 16;
const EPOCHS: usize = 12;
const BATCH: usize = 10;

struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            l1: linear(D, HIDDEN, vb.pp("l1"))?,
            l2: linear(HIDDEN, 2, vb.pp("l2"))?,
        })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(x)?.relu()?)
    }
}

/// Binary labels from a fixed logistic teacher.
fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = seeded_rng(seed);
    let x = randn(&[n, D], DType::F32, &Device::Cpu, &mut rng).unwrap();
    let w = randn(&[D, 1], DType::F32, &Device::Cpu, &mut seeded_rng(99)).unwrap();
    let noise = randn(&[n, 1], DType::F32, &Device::Cpu, &mut rng).unwrap();
    let y = (x.matmul(&w).unwrap() + (noise * 0.5).unwrap())
        .unwrap()
        .gt(0.0)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap()
        .squeeze(1)
        .unwrap();
    (x, y)
}

fn loss(m: &Mlp, x: &Tensor, y: &Tensor) -> f64 {
    candle_nn::loss::cross_entropy(&m.forward(x).unwrap(), y)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

fn named(vm: &VarMap) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn train_epoch(m: &Mlp, opt: &mut candle_nn::AdamW, x: &Tensor, y: &Tensor) {
    let n = x.dim(0).unwrap();
    for s in (0..n).step_by(BATCH) {
        let xb = x.narrow(0, s, BATCH).unwrap();
        let yb = y.narrow(0, s, BATCH).unwrap();
        let l = candle_nn::loss::cross_entropy(&m.forward(&xb).unwrap(), &yb).unwrap();
        opt.backward_step(&l).unwrap();
    }
}

/// A "pretrained" model: trained to convergence at a sane learning rate.
fn pretrained() -> (VarMap, Vec<(String, Tensor)>) {
    let vm = VarMap::new();
    let m = Mlp::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    // candle initialises from an unseeded RNG: re-initialise every weight from a seeded one
    // (scaled normal, biases zero), so that the test is the same every run.
    {
        let mut rng = seeded_rng(11);
        let data = vm.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let v: &Var = &data[name];
            let dims = v.dims().to_vec();
            let t = if name.ends_with("bias") {
                Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu).unwrap()
            } else {
                let fan_in = *dims.last().unwrap_or(&1) as f64;
                (randn(&dims, DType::F32, &Device::Cpu, &mut rng).unwrap() * fan_in.sqrt().recip())
                    .unwrap()
            };
            v.set(&t).unwrap();
        }
    }
    let (x, y) = data(400, 1);
    let mut opt = candle_nn::AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..30 {
        train_epoch(&m, &mut opt, &x, &y);
    }
    let w = named(&vm);
    (vm, w)
}

/// Fine-tunes a copy of the pretrained weights at `lr`, observing the monitor every epoch.
/// Returns (epoch of the stop, if any; whether a drift warning was seen; epochs run).
fn fine_tune(
    lr: f64,
    pre: &[(String, Tensor)],
    baseline: f64,
    cfg: &MonitorConfig,
) -> (Option<usize>, bool, usize) {
    let vm = VarMap::new();
    let m = Mlp::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    {
        let data = vm.data().lock().unwrap();
        for (name, t) in pre {
            let v: &Var = &data[name];
            v.set(t).unwrap();
        }
    }
    let (x, y) = data(200, 2);
    let (xv, yv) = data(400, 3);
    let mut opt = candle_nn::AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr,
            ..Default::default()
        },
    )
    .unwrap();
    let mut monitor = NegativeTransferMonitor::new(baseline, cfg.clone()).unwrap();
    let mut drift_warned = false;
    for epoch in 0..EPOCHS {
        train_epoch(&m, &mut opt, &x, &y);
        let drift = parameter_drift(pre, &named(&vm)).unwrap();
        if matches!(monitor.observe_drift(&drift), MonitorDecision::Warn { .. }) {
            drift_warned = true;
        }
        let d = monitor.observe(epoch, loss(&m, &xv, &yv));
        if let MonitorDecision::Stop { reason } = &d {
            assert!(!reason.is_empty());
            return (Some(epoch), drift_warned, epoch + 1);
        }
    }
    (None, drift_warned, EPOCHS)
}

#[test]
fn monitor_stops_a_harmful_run_within_patience_and_spares_a_sane_one() {
    let (vm, pre) = pretrained();
    let m = Mlp::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    let (xv, yv) = data(400, 3);
    // the baseline: the pretrained model's own validation loss
    let baseline = loss(&m, &xv, &yv);
    assert!(baseline < 0.45, "pretraining failed: {baseline}");
    let cfg = MonitorConfig {
        patience: 2,
        min_delta: 0.05,
        ..Default::default()
    };
    let (stop, drift_warned, _) = fine_tune(1e-1, &pre, baseline, &cfg);
    let stop = stop.expect("the lr 1e-1 run must be stopped");
    assert!(
        stop < cfg.patience,
        "stopped at epoch {stop}: the harm starts at once, so the stop must come within the patience of {}",
        cfg.patience
    );
    assert!(
        drift_warned,
        "lr 1e-1 must move a layer by more than half its norm"
    );

    let (stop, drift_warned, epochs) = fine_tune(1e-3, &pre, baseline, &cfg);
    assert_eq!(stop, None, "the sane run must not be stopped");
    assert_eq!(epochs, EPOCHS);
    assert!(!drift_warned);
}

#[test]
fn monitor_resets_on_recovery_and_respects_warmup() {
    let cfg = MonitorConfig {
        patience: 3,
        warmup: 1,
        ..Default::default()
    };
    let mut m = NegativeTransferMonitor::new(1.0, cfg).unwrap();
    // warm-up: not judged
    assert_eq!(m.observe(0, 2.0), MonitorDecision::Continue);
    assert!(matches!(m.observe(1, 1.5), MonitorDecision::Warn { .. }));
    assert!(matches!(m.observe(2, 1.5), MonitorDecision::Warn { .. }));
    // recovery resets the streak
    assert_eq!(m.observe(3, 0.9), MonitorDecision::Continue);
    assert!(matches!(m.observe(4, 1.2), MonitorDecision::Warn { .. }));
    assert!(matches!(m.observe(5, 1.2), MonitorDecision::Warn { .. }));
    assert!(m.observe(6, 1.2).is_stop());
    // stays stopped
    assert!(m.observe(7, 0.1).is_stop());
    assert_eq!(m.best(), Some((3, 0.9)));
    assert_eq!(m.history().len(), 7);
    // divergence stops at once
    let mut m = NegativeTransferMonitor::new(1.0, MonitorConfig::default()).unwrap();
    assert!(m.observe(0, f64::NAN).is_stop());
    let mut m = NegativeTransferMonitor::new(1.0, MonitorConfig::default()).unwrap();
    assert!(m.observe(0, 3.5).is_stop());
}
