//! Shared test helpers: a deterministic meter and a context that measures with it.

#![allow(dead_code)]

use forge_bench::scenario::{Meter, Mode, RunContext};
use forge_bench::schema::{CarbonSettings, Measurement};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A meter with a fixed cost per window: deterministic, no system counters.
pub struct FixedMeter {
    /// CO2 of every window, kg.
    pub co2_kg: f64,
}

impl Meter for FixedMeter {
    fn measure(
        &self,
        f: &mut dyn FnMut() -> forge_bench::Result<()>,
    ) -> forge_bench::Result<Measurement> {
        f()?;
        Ok(Measurement {
            wall_time_s: 1e-3,
            cpu_kwh: self.co2_kg,
            total_kwh: self.co2_kg,
            co2_kg: self.co2_kg,
            repeats: 1,
            energy_method: BTreeMap::from([("cpu".to_string(), "fixed".to_string())]),
            ..Default::default()
        })
    }
    fn settings(&self) -> CarbonSettings {
        CarbonSettings {
            energy_method: "fixed".into(),
            carbon_intensity_g_per_kwh: 475.0,
            pue: 1.0,
            region: "WLD".into(),
            note: "test".into(),
        }
    }
}

/// A quick-mode context measuring with a [`FixedMeter`] of `co2_kg` per window and no
/// repetition window.
pub fn fixed_ctx(co2_kg: f64) -> RunContext {
    let mut c = RunContext::new(Mode::Quick, Arc::new(FixedMeter { co2_kg }));
    c.min_measure_s = 0.0;
    c.max_repeats = 1;
    c
}

/// Runs `f` on a thread and fails the test if it does not finish within `secs` (a hang is a
/// failure, not a stuck test run).
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s (hang)"))
}
