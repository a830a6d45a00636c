//! Whole-model parameters with Hugging Face names: [`StateDict`] (`state_dict` /
//! `load_state_dict`, as PyTorch's `nn.Module`) and [`SavePretrained`] (`save_pretrained`, a
//! folder that transformers' `from_pretrained` loads).
//!
//! ```
//! use candle_core::Device;
//! use forge_lora::DeepClone;
//! use forge_models::{DistilBertConfig, DistilBertForSequenceClassification, StateDict};
//!
//! let cfg = DistilBertConfig { vocab_size: 50, dim: 16, n_layers: 1, n_heads: 2, hidden_dim: 32,
//!                              ..Default::default() };
//! let mut a = DistilBertForSequenceClassification::new_random(&cfg, 0, &Device::Cpu)?;
//! let mut b = DistilBertForSequenceClassification::new_random(&cfg, 1, &Device::Cpu)?;
//! let sd = a.state_dict()?;
//! assert_eq!(sd[0].0, "distilbert.embeddings.word_embeddings.weight");
//! b.load_state_dict(&sd)?; // b now computes exactly what a computes
//! let copy = a.try_clone_deep()?; // independent storage: training `a` leaves `copy` unchanged
//! # let _ = copy;
//! # Ok::<(), forge_models::ModelError>(())
//! ```

use crate::{ModelError, Result};
use candle_core::Tensor;
use forge_lora::{LoraModel, ModuleMut};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// File name of the config written by [`SavePretrained::save_pretrained`].
pub const CONFIG_FILE: &str = "config.json";

/// `state_dict` / `load_state_dict` for every [`LoraModel`] (blanket implementation).
///
/// Names are the model's Hugging Face names, `"<module path>.<local name>"` (e.g.
/// `"distilbert.transformer.layer.0.attention.q_lin.weight"`), in model order. Only base
/// parameters are included; LoRA adapters have their own state dict
/// ([`forge_lora::lora_state_dict`]).
pub trait StateDict: LoraModel {
    /// A snapshot of every base parameter: copies, so that later training does not change it
    /// (unlike PyTorch, whose `state_dict` shares storage), e.g. to compare parameters before
    /// and after fine-tuning.
    ///
    /// # Errors
    /// Candle errors only (allocation).
    fn state_dict(&mut self) -> Result<Vec<(String, Tensor)>> {
        crate::checkpoint::named_base_tensors(self, true)
    }

    /// The weights the model computes with, adapters folded in (`W + scaling * B A` for every
    /// unmerged LoRA layer, as PEFT's `merge_and_unload`), without changing the model. This is
    /// what [`SavePretrained::save_pretrained`] writes. The tensors may share storage with the
    /// model.
    ///
    /// # Errors
    /// Candle errors only.
    fn effective_state_dict(&mut self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (path, m) in self.named_modules_mut() {
            match m {
                ModuleMut::Linear(l) => {
                    out.push((format!("{path}.weight"), l.effective_weight()?));
                    if let Some(b) = l.bias() {
                        out.push((format!("{path}.bias"), b.var().as_detached_tensor()));
                    }
                }
                ModuleMut::Params(ps) => {
                    for (local, p) in ps {
                        out.push((format!("{path}.{local}"), p.var().as_detached_tensor()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Set every base parameter from `tensors` (exactly the model's names, as
    /// [`StateDict::state_dict`] returns them). All-or-nothing: names, shapes, dtypes and values
    /// are all checked before any parameter changes. Floating-point tensors of another precision
    /// (f16, bf16, f64) are converted; trainable flags and adapters are kept.
    ///
    /// # Errors
    /// [`ModelError::StateDictMismatch`] listing missing and unexpected (or duplicated) names;
    /// [`ModelError::ShapeMismatch`], [`ModelError::BadDType`] (integer tensors),
    /// [`ModelError::NonFinite`] naming the tensor.
    fn load_state_dict(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let mut given: HashMap<&str, &Tensor> = HashMap::new();
        let mut unexpected = Vec::new();
        for (k, t) in tensors {
            if given.insert(k.as_str(), t).is_some() {
                unexpected.push(format!("{k} (duplicated)"));
            }
        }
        let mut params = forge_lora::named_base_params_mut(self);
        let names: HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let mut missing: Vec<String> = params
            .iter()
            .filter(|(n, _)| !given.contains_key(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        unexpected.extend(
            given
                .keys()
                .filter(|k| !names.contains(*k))
                .map(|k| k.to_string()),
        );
        if !missing.is_empty() || !unexpected.is_empty() {
            missing.sort();
            unexpected.sort();
            return Err(ModelError::StateDictMismatch {
                missing,
                unexpected,
            });
        }
        for (name, p) in &params {
            let t = given[name.as_str()];
            check_tensor(name, t, &p.dims(), Path::new(""))?;
        }
        for (name, p) in &mut params {
            p.set(name, given[name.as_str()])?;
        }
        Ok(())
    }
}

impl<M: LoraModel + ?Sized> StateDict for M {}

/// Every base parameter with its name; copies when `copy`, detached views otherwise.
fn named_base_tensors<M: LoraModel + ?Sized>(
    model: &mut M,
    copy: bool,
) -> Result<Vec<(String, Tensor)>> {
    forge_lora::named_base_params_mut(model)
        .into_iter()
        .map(|(n, p)| {
            let t = p.var().as_detached_tensor();
            Ok((n, if copy { t.copy()? } else { t }))
        })
        .collect()
}

/// Check one incoming tensor against the parameter it will overwrite.
fn check_tensor(name: &str, t: &Tensor, dims: &[usize], path: &Path) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(ModelError::BadDType {
            tensor: name.to_string(),
            path: path.to_path_buf(),
            dtype: t.dtype().as_str().to_string(),
        });
    }
    if t.dims() != dims {
        return Err(ModelError::ShapeMismatch {
            tensor: name.to_string(),
            expected: dims.to_vec(),
            got: t.dims().to_vec(),
        });
    }
    let count = forge_lora::io::non_finite_count(t)?;
    if count > 0 {
        return Err(ModelError::NonFinite {
            tensor: name.to_string(),
            path: path.to_path_buf(),
            count,
        });
    }
    Ok(())
}

/// Models that can be written as a Hugging Face folder.
pub trait SavePretrained: StateDict {
    /// The `config.json` transformers needs to rebuild this model: the config's fields plus
    /// `model_type`, `architectures` and labels matching the current head.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the config cannot be serialised.
    fn hf_config(&self) -> Result<serde_json::Value>;

    /// Write `dir/config.json` and `dir/model.safetensors` (the [`StateDict::effective_state_dict`]:
    /// LoRA adapters folded in, f32, metadata `format = pt`), each atomically (forge-linalg's
    /// writer: a temporary file in `dir`, fsync, rename, fsync of `dir`; the safetensors file is
    /// streamed tensor by tensor, never held whole in memory), creating `dir` if needed. `transformers.AutoModel*.from_pretrained(dir)`
    /// loads it and computes the same outputs (checked by the fixture script's
    /// `--check-forge-model` mode). The model is not changed.
    ///
    /// # Errors
    /// [`ModelError::Io`] naming the path on a write failure.
    fn save_pretrained(&mut self, dir: &Path) -> Result<()> {
        let config = self.hf_config()?;
        let tensors = self.effective_state_dict()?;
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let wpath = dir.join(crate::weights::SAFETENSORS);
        forge_lora::io::write_safetensors(&wpath, &tensors)?;
        drop(tensors);
        let cpath = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).map_err(|e| ModelError::Config {
            field: "config",
            reason: e.to_string(),
        })?;
        forge_lora::io::write_atomic(&cpath, text.as_bytes())?;
        tracing::debug!(dir = %dir.display(), "model saved");
        Ok(())
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: PathBuf::from(path),
        source,
    }
}

/// `config.json` from a serialisable config: nulls dropped (transformers' defaults apply),
/// `model_type` and `architectures` set, and `id2label` / `label2id` with `num_labels` entries
/// (the config's names when it has that many, `LABEL_i` otherwise) when `num_labels` is given.
pub(crate) fn hf_config_json<C: serde::Serialize>(
    config: &C,
    model_type: &str,
    architecture: &str,
    num_labels: Option<usize>,
) -> Result<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let mut v = serde_json::to_value(config).map_err(|e| ModelError::Config {
        field: "config",
        reason: e.to_string(),
    })?;
    let obj = v.as_object_mut().ok_or(ModelError::Config {
        field: "config",
        reason: "does not serialise to a JSON object".into(),
    })?;
    obj.retain(|_, x| !x.is_null());
    obj.remove("num_labels");
    obj.insert("model_type".into(), json!(model_type));
    obj.insert("architectures".into(), json!([architecture]));
    if let Some(n) = num_labels {
        let names: Option<Vec<String>> = obj
            .get("id2label")
            .and_then(|m| m.as_object())
            .filter(|m| m.len() == n)
            .and_then(|m| {
                (0..n)
                    .map(|i| {
                        m.get(&i.to_string())
                            .and_then(|s| s.as_str())
                            .map(String::from)
                    })
                    .collect()
            });
        let names = names.unwrap_or_else(|| (0..n).map(|i| format!("LABEL_{i}")).collect());
        let id2label: Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (i.to_string(), json!(s)))
            .collect();
        let label2id: Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), json!(i)))
            .collect();
        obj.insert("id2label".into(), Value::Object(id2label));
        obj.insert("label2id".into(), Value::Object(label2id));
    } else {
        obj.remove("id2label");
    }
    obj.insert("dtype".into(), json!("float32"));
    Ok(v)
}
