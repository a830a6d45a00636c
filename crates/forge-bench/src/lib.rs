//! # forge-bench
//!
//! Benchmark scenarios, the multi-seed runner, the versioned results schema, tables, 300-DPI
//! figures and regression gates of [Forge](https://github.com/forge-ml/forge). `cargo xtask demo`
//! is a thin command line over this crate; this crate never prints.
//!
//! - [`scenario`]: the [`Scenario`] / [`Trial`] traits and the [`Registry`]. A scenario names its
//!   strategies (exactly one baseline, one headline transfer), its words for them
//!   ([`schema::Wording`]), how its trainings are measured ([`schema::MeasurePolicy`]) and what
//!   it needs (a model, text data); it builds per-seed state and measures the training of each
//!   strategy with [`RunContext::measure`].
//! - [`catalog`]: [`registry()`] of every shipped scenario (the one place a new scenario is
//!   registered), the production [`context()`], and model / text-data resolution.
//! - [`runner`]: scenarios x seeds x strategies -> [`ResultsFile`], with savings against the
//!   baseline of the same seed and mean ± std aggregates.
//! - [`shard`]: sweeps beyond one process: work units partitioned into shards, results shards
//!   with their provenance, and their aggregation into the results file a single run writes
//!   (with carbon summed per task and node); [`slurm`]: Slurm job-array scripts for them;
//!   [`compare`]: equality of two results files except timing and energy.
//! - [`schema`]: the JSON results schema ([`SCHEMA_VERSION`]), documented in `docs/results-schema.md`.
//! - [`classical`]: the tabular scenarios on real data (housing, wine, titanic, cancer,
//!   diabetes, and a negative-transfer scenario the safety gate must block).
//! - [`transformer`]: the transformer scenarios on a real pretrained encoder and real text
//!   (full fine-tuning vs LoRA on SST-2), run when a model and the text data are given.
//! - [`report`], [`figures`], [`gates`]: tables, PNGs, and threshold checks; [`validate`]
//!   rejects non-finite, absurd or empty results before they are written or read.
//! - [`carbon`]: the production [`Meter`] on forge-carbon's tracker.
//!
//! ```
//! use forge_bench::scenario::{Meter, Mode, Registry, RunContext};
//! use forge_bench::schema::{CarbonSettings, Measurement};
//! use forge_bench::{runner, report};
//!
//! // A fixed-cost meter keeps the example deterministic; `forge_bench::carbon::CarbonMeter`
//! // measures for real.
//! struct Fixed;
//! impl Meter for Fixed {
//!     fn measure(&self, f: &mut dyn FnMut() -> forge_bench::Result<()>) -> forge_bench::Result<Measurement> {
//!         f()?;
//!         Ok(Measurement { co2_kg: 1e-6, total_kwh: 2e-6, repeats: 1, ..Default::default() })
//!     }
//!     fn settings(&self) -> CarbonSettings { CarbonSettings::default() }
//! }
//! let ctx = RunContext::new(Mode::Quick, std::sync::Arc::new(Fixed));
//! let mut registry = Registry::new();
//! registry.register(Box::new(forge_bench::example::Toy))?;
//! let plan = runner::RunPlan { mode: Mode::Quick, seeds: vec![0, 1], scenarios: None };
//! let results = runner::run(&registry, &plan, &ctx, &mut runner::NoProgress)?;
//! assert_eq!(results.records.len(), 2 * 2);
//! let table = report::method_table(&results).to_text();
//! assert!(table.contains("toy"));
//! # Ok::<(), forge_bench::BenchError>(())
//! ```
#![deny(missing_docs)]

mod aggregate;
pub mod carbon;
pub mod catalog;
pub mod classical;
pub mod compare;
mod error;
pub mod example;
pub mod figures;
pub mod gates;
pub mod io;
mod machine;
pub mod plan;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schema;
pub mod shard;
pub mod slurm;
pub mod speed;
pub mod stats;
pub mod transformer;
pub mod validate;

pub use catalog::{context, registry};
pub use error::{BenchError, Result};
pub use runner::{run, RunPlan};
pub use scenario::{Meter, Mode, Registry, RunContext, Scenario, StrategySpec, Trial};
pub use schema::{ResultsFile, SCHEMA_VERSION};

/// The folder with the tabular CSVs: `$FORGE_DATA_DIR` if set, else the repository's `datasets/`
/// (forge-data's [`datasets_dir`](forge_data::datasets_dir)).
pub fn default_data_dir() -> std::path::PathBuf {
    forge_data::datasets_dir()
}
