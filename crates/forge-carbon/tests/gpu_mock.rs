//! GPU metering logic against a mock NVML backend; NVML fallback (feature `nvml`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{FakeProbe, EPYC_CPUINFO};
use forge_carbon::{CarbonConfig, CarbonTracker, EnergyMethod, GpuBackend, GpuMeter};

/// GPU 0 ("Mock V100") has an energy counter the test advances; GPU 1 ("Mock K80") only reports
/// power, `power_mw` milliwatts, constant.
struct MockGpus {
    counter_mj: Arc<AtomicU64>,
    power_mw: u32,
    power_calls: Arc<AtomicU64>,
}

impl GpuBackend for MockGpus {
    fn device_count(&self) -> usize {
        2
    }
    fn name(&self, i: usize) -> String {
        if i == 0 { "Mock V100" } else { "Mock K80" }.to_string()
    }
    fn total_energy_mj(&self, i: usize) -> Option<u64> {
        (i == 0).then(|| self.counter_mj.load(Ordering::SeqCst))
    }
    fn power_mw(&self, i: usize) -> Option<u32> {
        if i == 1 {
            self.power_calls.fetch_add(1, Ordering::SeqCst);
        }
        (i == 1).then_some(self.power_mw)
    }
}

/// A backend whose single GPU's power ramps with each reading: 0, 10, 20, ... W.
struct RampGpu(std::sync::atomic::AtomicU32);

impl GpuBackend for RampGpu {
    fn device_count(&self) -> usize {
        1
    }
    fn name(&self, _: usize) -> String {
        "Ramp".into()
    }
    fn total_energy_mj(&self, _: usize) -> Option<u64> {
        None
    }
    fn power_mw(&self, _: usize) -> Option<u32> {
        Some(self.0.fetch_add(10_000, Ordering::SeqCst))
    }
}

#[test]
fn meter_integrates_sampled_power_by_trapezoid() {
    let b = RampGpu(Default::default());
    let mut m = GpuMeter::start(&b, 0.0); // 0 W at t=0
    m.sample(&b, 1.0); // 10 W at t=1
    m.sample(&b, 3.0); // 20 W at t=3
                       // (0+10)/2*1 + (10+20)/2*2 = 5 + 30 = 35 J
    assert!((m.energy_j() - 35.0).abs() < 1e-12);
    assert_eq!(m.method(), Some(EnergyMethod::NvmlPower));
    assert_eq!(m.model_string().as_deref(), Some("1 x Ramp"));
}

#[test]
fn tracker_meters_counter_and_sampled_gpus() {
    let counter = Arc::new(AtomicU64::new(1_000_000));
    let calls = Arc::new(AtomicU64::new(0));
    let gpus = MockGpus {
        counter_mj: counter.clone(),
        power_mw: 50_000,
        power_calls: calls.clone(),
    };
    let probe = FakeProbe::new(2, 0, EPYC_CPUINFO);
    let cfg = CarbonConfig {
        use_rapl: false,
        sample_interval_ms: 10,
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe, Some(Box::new(gpus))).unwrap();
    t.start().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    counter.fetch_add(7_200, Ordering::SeqCst); // +7.2 J on GPU 0
    let e = t.stop().unwrap();
    assert!(calls.load(Ordering::SeqCst) >= 5, "background sampling ran");
    // GPU 1 at a constant 50 W from t=0 to the stop sample (<= duration).
    let gpu_j = e.gpu_energy_kwh * 3.6e6;
    let sampled = gpu_j - 7.2;
    assert!(
        sampled > 50.0 * 0.15 && sampled <= 50.0 * e.duration_s + 1e-9,
        "{sampled} J over {} s",
        e.duration_s
    );
    assert_eq!(e.gpu_method, Some(EnergyMethod::NvmlPower));
    assert_eq!(e.gpu_count, 2);
    assert_eq!(e.gpu_model.as_deref(), Some("1 x Mock V100, 1 x Mock K80"));
}

#[test]
fn counter_only_gpus_report_nvml_energy_and_need_no_thread() {
    struct CounterOnly(Arc<AtomicU64>);
    impl GpuBackend for CounterOnly {
        fn device_count(&self) -> usize {
            1
        }
        fn name(&self, _: usize) -> String {
            "NVIDIA H100 80GB HBM3".into()
        }
        fn total_energy_mj(&self, _: usize) -> Option<u64> {
            Some(self.0.load(Ordering::SeqCst))
        }
        fn power_mw(&self, _: usize) -> Option<u32> {
            None
        }
    }
    let c = Arc::new(AtomicU64::new(0));
    let probe = FakeProbe::new(2, 0, EPYC_CPUINFO);
    let cfg = CarbonConfig {
        use_rapl: false,
        ..CarbonConfig::default()
    };
    let mut t =
        CarbonTracker::with_parts(cfg, probe, Some(Box::new(CounterOnly(c.clone())))).unwrap();
    t.start().unwrap();
    c.store(3_600_000, Ordering::SeqCst); // 3600 J = 1 Wh
    let e = t.stop().unwrap();
    assert_eq!(e.gpu_method, Some(EnergyMethod::NvmlEnergy));
    assert!((e.gpu_energy_kwh - 0.001).abs() < 1e-15);
}

#[test]
fn no_gpu_means_no_gpu_method() {
    let probe = FakeProbe::new(2, 0, EPYC_CPUINFO);
    let cfg = CarbonConfig {
        use_rapl: false,
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe, None).unwrap();
    t.start().unwrap();
    let e = t.stop().unwrap();
    assert_eq!(e.gpu_method, None);
    assert_eq!((e.gpu_energy_kwh, e.gpu_count), (0.0, 0));
}

/// With feature `nvml`: on a machine without an NVIDIA driver, NVML fails to start, the tracker
/// records a warning and carries on; with a GPU, NVML meters it.
#[cfg(feature = "nvml")]
#[test]
fn nvml_start_never_fails_the_run() {
    let mut t = CarbonTracker::new(CarbonConfig::default()).unwrap();
    t.start().unwrap();
    let e = t.stop().unwrap();
    match e.gpu_method {
        None => assert!(
            e.warnings.iter().any(|w| w.contains("NVML")),
            "a failed NVML start is reported: {:?}",
            e.warnings
        ),
        Some(m) => assert!(matches!(
            m,
            EnergyMethod::NvmlEnergy | EnergyMethod::NvmlPower
        )),
    }
    assert!(e.cpu_energy_kwh >= 0.0);
}

#[test]
fn skipped_devices_do_not_shift_readings() {
    // GPU 0 reports nothing (skipped); GPU 1 has a counter.
    struct Gapped(Arc<AtomicU64>);
    impl GpuBackend for Gapped {
        fn device_count(&self) -> usize {
            2
        }
        fn name(&self, i: usize) -> String {
            format!("gpu{i}")
        }
        fn total_energy_mj(&self, i: usize) -> Option<u64> {
            (i == 1).then(|| self.0.load(Ordering::SeqCst))
        }
        fn power_mw(&self, _: usize) -> Option<u32> {
            None
        }
    }
    let c = Arc::new(AtomicU64::new(500));
    let b = Gapped(c.clone());
    let mut m = GpuMeter::start(&b, 0.0);
    c.store(2_500, Ordering::SeqCst);
    m.sample(&b, 1.0);
    assert_eq!(m.device_count(), 1);
    assert!((m.energy_j() - 2.0).abs() < 1e-12);
    assert_eq!(m.model_string().as_deref(), Some("1 x gpu1"));
}
