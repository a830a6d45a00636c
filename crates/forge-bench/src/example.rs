//! A toy scenario with a closed-form "training", used in docs and tests to show how a scenario
//! plugs into the runner without any dataset.

use crate::error::{BenchError, Result};
use crate::scenario::{RunContext, Scenario, StrategyOutcome, StrategySpec, Trial};
use crate::schema::{Measurement, Metric, StrategyKind};

/// A scenario with a baseline and one transfer strategy whose quality depends on the seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Toy;

impl Toy {
    /// Name of its baseline strategy.
    pub const BASELINE: &'static str = "toy-scratch";
    /// Name of its (headline) transfer strategy.
    pub const TRANSFER: &'static str = "toy-transfer";
}

struct ToyTrial {
    seed: u64,
}

impl Scenario for Toy {
    fn name(&self) -> &str {
        "toy"
    }
    fn description(&self) -> &str {
        "a toy scenario"
    }
    fn metric(&self) -> Metric {
        Metric::R2
    }
    fn strategies(&self) -> Vec<StrategySpec> {
        vec![
            StrategySpec::new(Toy::BASELINE, StrategyKind::Baseline, false, "from scratch"),
            StrategySpec::new(Toy::TRANSFER, StrategyKind::Transfer, true, "warm start"),
        ]
    }
    fn headline_strategy(&self) -> &str {
        Toy::TRANSFER
    }
    fn trial(&self, seed: u64, _ctx: &RunContext) -> Result<Box<dyn Trial>> {
        Ok(Box::new(ToyTrial { seed }))
    }
}

impl Trial for ToyTrial {
    fn run(&mut self, strategy: &str, ctx: &RunContext) -> Result<StrategyOutcome> {
        let (steps, quality) = match strategy {
            Toy::BASELINE => (100u64, 0.80),
            Toy::TRANSFER => (10u64, 0.79 + 0.001 * self.seed as f64),
            other => {
                return Err(BenchError::UnknownStrategy {
                    scenario: "toy".into(),
                    strategy: other.into(),
                })
            }
        };
        let ((), training) = ctx.measure(|| {
            std::hint::black_box((0..steps * 1000).sum::<u64>());
            Ok(())
        })?;
        let training = Measurement {
            co2_kg: training.co2_kg * steps as f64,
            ..training
        };
        Ok(StrategyOutcome {
            quality,
            extra_metrics: Default::default(),
            trainable_params: 9,
            gradient_steps: steps,
            epochs: Some(steps as u32 / 10),
            training,
            note: None,
            config: [("steps".to_string(), (steps as i64).into())].into(),
        })
    }
    fn source_cost(&self) -> Option<Measurement> {
        Some(Measurement {
            co2_kg: 5e-6,
            repeats: 1,
            ..Default::default()
        })
    }
}
