//! Saving and loading an EWC state (Fisher diagonals + anchors + hyper-parameters) as one
//! safetensors file, written atomically through [`forge_linalg::io`].
//!
//! # Format
//! Tensors `fisher/<name>` and `anchor/<name>` for each penalised parameter (in the parameter's
//! dtype), and `__metadata__` string entries:
//!
//! | key | value |
//! |---|---|
//! | `format` | `forge-ewc` |
//! | `forge_ewc_version` | `1` |
//! | `lambda`, `gamma` | decimal numbers (Rust's shortest round-trip form) |
//! | `estimator` | the [`FisherEstimator`] as JSON, e.g. `{"kind":"batch","batch_size":16}` |
//! | `tasks`, `n_samples` | integers |
//! | `names` | JSON list of parameter names in penalty order |

use crate::diagonal::{check_finite, check_fisher_values, check_unique};
use crate::ewc::{Entry, Ewc, EwcConfig};
use crate::filter::{BindReport, ParamFilter};
use crate::fisher::FisherEstimator;
use crate::{EwcError, Result};
use candle_core::{DType, Device, Tensor, Var};
use forge_linalg::io::{candle_dtype, write_safetensors, SafeTensorsFile};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "forge-ewc";
/// Version of the file layout.
pub const VERSION: &str = "1";
const FISHER_PREFIX: &str = "fisher/";
const ANCHOR_PREFIX: &str = "anchor/";

fn corrupt(path: &Path, reason: impl Into<String>) -> EwcError {
    EwcError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One tensor of the file, any float dtype (`F64` through raw bytes: forge-linalg converts the
/// dtypes models use).
fn read_tensor(file: &SafeTensorsFile, name: &str, device: &Device) -> Result<Tensor> {
    let (spec, bytes) = file.raw(name)?;
    let dtype = match candle_dtype(spec.dtype) {
        Some(d) => d,
        None if spec.dtype == safetensors::Dtype::F64 => DType::F64,
        None => {
            return Err(corrupt(
                file.path(),
                format!(
                    "tensor {name:?} has dtype {:?}; expected a float dtype",
                    spec.dtype
                ),
            ))
        }
    };
    Ok(Tensor::from_raw_buffer(bytes, dtype, &spec.shape, device)?)
}

impl Ewc {
    /// Writes the Fisher diagonals, anchors and hyper-parameters to `path` (a safetensors file),
    /// atomically: an interrupted save leaves any previous file intact.
    ///
    /// # Errors
    /// [`EwcError::Linalg`] naming the path on I/O failure; candle errors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors = Vec::with_capacity(2 * self.entries.len());
        for e in &self.entries {
            tensors.push((format!("{FISHER_PREFIX}{}", e.name), e.fisher.clone()));
            tensors.push((format!("{ANCHOR_PREFIX}{}", e.name), e.anchor.clone()));
        }
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("forge_ewc_version", VERSION.to_string()),
            ("lambda", self.config.lambda.to_string()),
            ("gamma", self.config.gamma.to_string()),
            (
                "estimator",
                serde_json::to_string(&self.estimator).map_err(|e| corrupt(path, e.to_string()))?,
            ),
            ("tasks", self.tasks.to_string()),
            ("n_samples", self.n_samples.to_string()),
            (
                "names",
                serde_json::to_string(&names).map_err(|e| corrupt(path, e.to_string()))?,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_safetensors(path, &tensors, Some(meta))?;
        tracing::debug!(path = %path.display(), tensors = self.entries.len(), "EWC state saved");
        Ok(())
    }

    /// Loads a state written by [`Ewc::save`] and binds it to `params` (the model's `Var`s, by
    /// name) under `filter`, with lambda and gamma from the file.
    ///
    /// # Errors
    /// [`EwcError::Linalg`] (missing/unreadable/truncated file, naming it), [`EwcError::Corrupt`]
    /// (not a forge-ewc file, bad metadata, Fisher/anchor shapes disagree), [`EwcError::NonFinite`]
    /// / [`EwcError::NegativeFisher`], [`EwcError::InvalidLambda`] / [`EwcError::InvalidGamma`],
    /// and the errors of [`Ewc::bind`] (e.g. [`EwcError::ShapeMismatch`] when a parameter's
    /// shape differs from the file's and the filter does not skip it).
    pub fn load(
        path: impl AsRef<Path>,
        params: &[(String, Var)],
        filter: &ParamFilter,
    ) -> Result<(Self, BindReport)> {
        let path = path.as_ref();
        let file = SafeTensorsFile::open(path)?;
        let meta = file
            .metadata()
            .ok_or_else(|| corrupt(path, "no __metadata__: not a forge-ewc file"))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| corrupt(path, format!("metadata key {k:?} is missing")))
        };
        if get("format")? != FORMAT {
            return Err(corrupt(
                path,
                format!("format is {:?}, expected {FORMAT:?}", get("format")?),
            ));
        }
        if get("forge_ewc_version")? != VERSION {
            return Err(corrupt(
                path,
                format!(
                    "forge_ewc_version {:?} is not supported (this build reads {VERSION})",
                    get("forge_ewc_version")?
                ),
            ));
        }
        let num = |k: &str| -> Result<f64> {
            get(k)?
                .parse::<f64>()
                .map_err(|e| corrupt(path, format!("metadata {k}: {e}")))
        };
        let int = |k: &str| -> Result<usize> {
            get(k)?
                .parse::<usize>()
                .map_err(|e| corrupt(path, format!("metadata {k}: {e}")))
        };
        let config = EwcConfig {
            lambda: num("lambda")?,
            gamma: num("gamma")?,
        };
        config.validate()?;
        let estimator: FisherEstimator = serde_json::from_str(get("estimator")?)
            .map_err(|e| corrupt(path, format!("metadata estimator: {e}")))?;
        let names: Vec<String> = serde_json::from_str(get("names")?)
            .map_err(|e| corrupt(path, format!("metadata names: {e}")))?;
        if names.is_empty() {
            return Err(corrupt(path, "the file holds no parameters"));
        }
        check_unique(names.iter().map(String::as_str))?;
        let listed: HashSet<String> = names
            .iter()
            .flat_map(|n| [format!("{FISHER_PREFIX}{n}"), format!("{ANCHOR_PREFIX}{n}")])
            .collect();
        if let Some(extra) = file.names().find(|n| !listed.contains(*n)) {
            return Err(corrupt(
                path,
                format!("tensor {extra:?} is not listed in metadata names"),
            ));
        }
        let device = params
            .first()
            .map_or(Device::Cpu, |(_, v)| v.device().clone());
        let placeholder = Var::from_tensor(&Tensor::zeros(1, DType::F32, &Device::Cpu)?)?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let read = |prefix: &str| -> Result<Tensor> {
                let key = format!("{prefix}{name}");
                if !file.contains(&key) {
                    return Err(corrupt(path, format!("tensor {key:?} is missing")));
                }
                read_tensor(&file, &key, &device)
            };
            let (fisher, anchor) = (read(FISHER_PREFIX)?, read(ANCHOR_PREFIX)?);
            if fisher.dims() != anchor.dims() {
                return Err(corrupt(
                    path,
                    format!(
                        "Fisher {:?} and anchor {:?} of {name:?} differ in shape",
                        fisher.dims(),
                        anchor.dims()
                    ),
                ));
            }
            check_fisher_values(&name, &fisher)?;
            check_finite("anchor", &name, &anchor)?;
            entries.push(Entry {
                name,
                var: placeholder.clone(),
                fisher,
                anchor,
            });
        }
        let mut ewc = Ewc {
            config,
            estimator,
            entries,
            tasks: int("tasks")?,
            n_samples: int("n_samples")?,
        };
        let report = ewc.bind(params, filter)?;
        Ok((ewc, report))
    }
}
