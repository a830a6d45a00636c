//! # forge-data
//!
//! Datasets and domain splits for [Forge](https://github.com/forge-ml/forge)'s transfer
//! learning experiments.
//!
//! - [`TabularDataset`]: an f64 feature matrix `x` `[n, d]`, a target `y` `[n]` (class ids
//!   `0., 1., ...` for classification), their names and the [`Task`]; seeded
//!   [`train_test_split`](TabularDataset::train_test_split) and few-shot
//!   [`subsample`](TabularDataset::subsample) (stratified for classification).
//! - [`DomainSplit`]: a source and a target domain with a description of the shift;
//!   [`standardized`](DomainSplit::standardized) fits the standardiser on the source only.
//! - The shipped splits: [`california_housing`] (north -> south), [`wine_quality`]
//!   (red -> white), [`titanic`] (Southampton -> Cherbourg/Queenstown), [`breast_cancer`]
//!   (small -> large mean radius), [`diabetes`] (younger -> older), all read from
//!   [`datasets_dir`]; the generic [`load_csv`].
//! - [`TextDataset`]: SST-2, AG News and Rotten Tomatoes from a local folder ([`text`]).
//!
//! Every bad file gives a typed [`DataError`] naming the file, line, column and cell text.
//!
//! ```
//! use forge_data::{datasets_dir, wine_quality, Budget, WineTask};
//! let split = wine_quality(&datasets_dir(), WineTask::Regression)?.standardized()?;
//! assert_eq!((split.source.n_samples(), split.target.n_samples()), (1599, 4898));
//! let few = split.target.subsample(Budget::Fraction(0.01), 42)?;
//! assert_eq!(few.n_samples(), 49);
//! # Ok::<(), forge_data::DataError>(())
//! ```
#![deny(missing_docs)]

mod error;
pub mod splits;
mod table;
pub mod tabular;
pub mod text;
#[cfg(feature = "parquet")]
#[path = "text_hf.rs"]
pub mod text_hf;

pub use error::{DataError, Result};
pub use splits::{
    all_splits, breast_cancer, california_housing, datasets_dir, diabetes, load_split, titanic,
    wine_quality, WineTask, BREAST_CANCER_FEATURES, SPLIT_NAMES,
};
pub use tabular::{load_csv, Budget, DomainSplit, FewShot, TabularDataset, Task};
pub use text::{
    ag_news, load_ag_news_tsv, load_rotten_tomatoes_csv, load_sst2_tsv, rotten_tomatoes, sst2,
    text_data_dir, TextDataset, TextSplit, AG_NEWS_LABELS,
};
