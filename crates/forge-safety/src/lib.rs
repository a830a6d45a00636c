//! # forge-safety
//!
//! WIP
#![deny(missing_docs)]

pub mod correction;
mod error;
mod input;
pub mod ks;
pub mod mmd;
pub mod stats;

pub use correction::{adjust_p_values, Correction};
pub use error::{BoxError, Result, SafetyError};
pub use ks::{ks_2samp, ks_per_feature, KsConfig, KsMethod, KsReport, KsResult};
pub use mmd::{mmd2_linear, mmd2_unbiased, mmd_test, Bandwidth, MmdConfig, MmdMethod, MmdResult};
