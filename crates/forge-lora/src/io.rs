//! PEFT adapter files: `adapter_model.safetensors` + `adapter_config.json`, written atomically.

use crate::injector::{lora_state_dict, PEFT_PREFIX};
use crate::model::ModuleMut;
use crate::{LoraConfig, LoraError, LoraInjector, LoraModel, Result};
use candle_core::{Device, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// File name of the adapter weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// File name of the adapter config.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

fn io_err(path: &Path, source: std::io::Error) -> LoraError {
    LoraError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically: [`forge_linalg::io::write_atomic`] (a uniquely named
/// temporary file in the same folder, fsync of the file, rename, fsync of the folder). Kept here
/// so that callers of forge-lora get a [`LoraError`].
///
/// # Errors
/// [`LoraError::Linalg`] wrapping an I/O error that names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(forge_linalg::io::write_atomic(path, bytes)?)
}

/// Write named tensors to a safetensors file atomically and tensor by tensor
/// ([`forge_linalg::io::write_safetensors`]), with the metadata `{"format": "pt"}` PyTorch writes
/// (transformers and PEFT check for it).
///
/// # Errors
/// [`LoraError::Linalg`] naming the path (write failure, duplicate names).
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    Ok(forge_linalg::io::write_safetensors(
        path,
        &contiguous,
        Some(forge_linalg::io::pt_metadata()),
    )?)
}

/// Map forge-linalg's reader errors to forge-lora's (a missing file is [`LoraError::Io`], a
/// truncated or corrupt one [`LoraError::Corrupt`], both naming the file).
fn read_err(path: &Path, e: forge_linalg::LinalgError) -> LoraError {
    match e {
        forge_linalg::LinalgError::Io { path, source } => LoraError::Io { path, source },
        forge_linalg::LinalgError::Corrupt { path, reason } => LoraError::Corrupt { path, reason },
        other => LoraError::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Read a safetensors file into named tensors on `device` through forge-linalg's memory-mapped
/// reader ([`forge_linalg::io::SafeTensorsFile`]: header validated, no whole-file read), keeping
/// each tensor's stored dtype (integer tensors included, so that callers can reject them by name).
///
/// # Errors
/// [`LoraError::Io`] when the file cannot be opened (e.g. missing), [`LoraError::Corrupt`] when it
/// is not valid safetensors (truncated, bad header, unknown dtype).
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let f = forge_linalg::io::SafeTensorsFile::open(path).map_err(|e| read_err(path, e))?;
    let names: Vec<String> = f.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|name| {
            let (spec, bytes) = f.raw(&name).map_err(|e| read_err(path, e))?;
            let dtype =
                candle_core::DType::try_from(spec.dtype).map_err(|e| LoraError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("tensor {name:?}: {e}"),
                })?;
            let t = Tensor::from_raw_buffer(bytes, dtype, &spec.shape, device)?;
            Ok((name, t))
        })
        .collect()
}

/// Number of NaN or infinite entries of `t` (0 for integer tensors).
///
/// # Errors
/// Candle errors only.
pub fn non_finite_count(t: &Tensor) -> Result<usize> {
    if !t.dtype().is_float() {
        return Ok(0);
    }
    let t = t.flatten_all()?;
    // 0 * x is 0 for every finite x and NaN for NaN and +-inf.
    let bad = (&t * 0.0)?.ne(0.0)?.to_dtype(candle_core::DType::U32)?;
    Ok(bad.sum_all()?.to_scalar::<u32>()? as usize)
}

/// Largest weight magnitude accepted on load. Trained weights stay far below 1e3; a flipped
/// exponent bit in a stored float gives values like 8e37 that overflow a forward pass to NaN
/// (found by the fuzz targets of `forge-cli/tests/fuzz.rs`), so they are refused as damage.
pub const MAX_WEIGHT_ABS: f64 = 1e15;

/// The largest magnitude in a float tensor (0 for an empty one).
///
/// # Errors
/// Candle errors only.
pub fn max_abs(t: &Tensor) -> Result<f64> {
    if t.elem_count() == 0 {
        return Ok(0.0);
    }
    Ok(t.to_dtype(candle_core::DType::F32)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?
        .into())
}

/// Check a tensor read from `path` before it becomes a parameter: a floating-point dtype, no
/// NaN or infinity, and no magnitude above [`MAX_WEIGHT_ABS`].
///
/// # Errors
/// [`LoraError::BadDType`] / [`LoraError::NonFinite`] / [`LoraError::Corrupt`] naming `name`
/// and `path`.
pub fn check_weight(name: &str, t: &Tensor, path: &Path) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(LoraError::BadDType {
            tensor: name.to_string(),
            path: path.to_path_buf(),
            dtype: t.dtype().as_str().to_string(),
        });
    }
    let count = non_finite_count(t)?;
    if count > 0 {
        return Err(LoraError::NonFinite {
            tensor: name.to_string(),
            path: path.to_path_buf(),
            count,
        });
    }
    let max = max_abs(t)?;
    if max > MAX_WEIGHT_ABS {
        return Err(LoraError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "tensor {name:?} holds a value of magnitude {max:e}; no trained weight is above \
                 {MAX_WEIGHT_ABS:e} (a damaged file: such values overflow to NaN)"
            ),
        });
    }
    Ok(())
}

/// Save the adapter of `model` in PEFT's format into folder `dir` (created if needed):
/// `adapter_model.safetensors` (see [`lora_state_dict`]) and `adapter_config.json`.
/// Both files are written atomically. `peft.PeftModel.from_pretrained(base, dir)` loads them.
///
/// # Errors
/// [`LoraError::InvalidState`] if the model has no adapter; [`LoraError::Io`] on write failure.
pub fn save_adapter<M: LoraModel + ?Sized>(
    model: &mut M,
    config: &LoraConfig,
    dir: &Path,
) -> Result<()> {
    let sd = lora_state_dict(model, config);
    if !sd.iter().any(|(k, _)| k.ends_with(".lora_A.weight")) {
        return Err(LoraError::InvalidState {
            module: model.architecture(),
            reason: "has no LoRA adapter to save".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), &sd)?;
    let cpath = dir.join(ADAPTER_CONFIG);
    let json = serde_json::to_string_pretty(config).map_err(|e| LoraError::Corrupt {
        path: cpath.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&cpath, json.as_bytes())
}

/// Read and validate `dir/adapter_config.json` (unknown keys tolerated).
///
/// # Errors
/// [`LoraError::Io`] (missing file), [`LoraError::Corrupt`] (bad JSON), or a validation error.
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let cpath = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&cpath).map_err(|e| io_err(&cpath, e))?;
    let cfg: LoraConfig = serde_json::from_str(&text).map_err(|e| LoraError::Corrupt {
        path: cpath.clone(),
        reason: e.to_string(),
    })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Split an adapter key into (module path, kind) where kind is `lora_A`, `lora_B` or `None` for a
/// `modules_to_save` tensor. Accepts keys with or without PEFT's prefix and the adapter name.
fn parse_key(key: &str) -> (String, Option<&'static str>) {
    let k = key.strip_prefix(PEFT_PREFIX).unwrap_or(key);
    for kind in ["lora_A", "lora_B"] {
        for suffix in [format!(".{kind}.weight"), format!(".{kind}.default.weight")] {
            if let Some(path) = k.strip_suffix(suffix.as_str()) {
                return (path.to_string(), Some(kind));
            }
        }
    }
    let k = k.replace(".modules_to_save.default.", ".");
    (k, None)
}

/// What one adapter tensor is for: an adapter matrix of a targeted layer, or a parameter of a
/// `modules_to_save` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    A,
    B,
    Full,
}

/// Load a PEFT adapter folder into `model`: inject adapters per its `adapter_config.json`, then
/// set A, B and the `modules_to_save` tensors from `adapter_model.safetensors`. Returns the config.
///
/// All-or-nothing: every file, key, dtype, shape and value is checked before the model is
/// touched, and should anything still fail while installing, the model is restored (adapters
/// removed, trainable flags and `modules_to_save` values put back). After an error the model
/// computes exactly what it computed before, and loading a good adapter then works.
///
/// # Errors
/// [`LoraError::Io`] / [`LoraError::Corrupt`] for missing or corrupt files; validation errors of
/// the config (e.g. `r` or `lora_alpha` out of range); [`LoraError::ArchitectureMismatch`] when
/// the file names a module the model does not have (an adapter for another architecture);
/// [`LoraError::UnexpectedTensor`] for adapter matrices of a module that is not targeted, or
/// full tensors of a module not in `modules_to_save` (e.g. a classifier saved without
/// `modules_to_save`); [`LoraError::MissingTensor`] when an adapted module has no A or B in the
/// file; [`LoraError::ShapeMismatch`], [`LoraError::BadDType`] (integer tensors),
/// [`LoraError::NonFinite`] (NaN, infinity) naming the tensor; [`LoraError::InvalidState`] when a
/// targeted layer already has an adapter.
pub fn load_adapter<M: LoraModel + ?Sized>(model: &mut M, dir: &Path) -> Result<LoraConfig> {
    let config = read_adapter_config(dir)?;
    let wpath = dir.join(ADAPTER_WEIGHTS);
    let device = first_device(model);
    let tensors = read_safetensors(&wpath, &device)?;
    let arch = model.architecture();
    let mismatch = |module: &str, tensor: &str| LoraError::ArchitectureMismatch {
        architecture: arch.clone(),
        module: module.to_string(),
        tensor: tensor.to_string(),
        adapter_base: config
            .base_model_name_or_path
            .clone()
            .unwrap_or_else(|| "an unknown model".into()),
    };
    // 1. every key must name a module (and parameter) of this model.
    let mut known: HashMap<String, (bool, Vec<&'static str>)> = HashMap::new();
    for (path, m) in model.named_modules_mut() {
        match m {
            ModuleMut::Linear(l) => {
                let locals = l.base_params_mut().into_iter().map(|(n, _)| n).collect();
                known.insert(path, (true, locals));
            }
            ModuleMut::Params(ps) => {
                known.insert(path, (false, ps.into_iter().map(|(n, _)| n).collect()));
            }
        }
    }
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in &keys {
        match parse_key(key) {
            (path, Some(_)) => {
                if !known.get(&path).is_some_and(|(lin, _)| *lin) {
                    return Err(mismatch(&path, key));
                }
            }
            (full, None) => {
                let ok = full
                    .rsplit_once('.')
                    .and_then(|(path, local)| {
                        known.get(path).map(|(_, locals)| locals.contains(&local))
                    })
                    .unwrap_or(false);
                if !ok {
                    return Err(mismatch(&full, key));
                }
            }
        }
    }
    // 2. what the config expects, with shapes, checked against the model without changing it.
    let injector = LoraInjector::new(config.clone())?;
    let targets: HashSet<String> = injector.check_targets(model)?.into_iter().collect();
    let r = config.r;
    let mut expected: Vec<((String, Slot), Vec<usize>, String)> = Vec::new();
    for (path, m) in model.named_modules_mut() {
        let save = config.is_module_to_save(&path);
        let params = match m {
            ModuleMut::Linear(l) => {
                if targets.contains(&path) {
                    let (o, i) = (l.out_features(), l.in_features());
                    let shown = |k: &str| format!("{PEFT_PREFIX}{path}.{k}.weight");
                    expected.push(((path.clone(), Slot::A), vec![r, i], shown("lora_A")));
                    expected.push(((path.clone(), Slot::B), vec![o, r], shown("lora_B")));
                }
                l.base_params_mut()
            }
            ModuleMut::Params(ps) => ps,
        };
        if save {
            for (local, p) in params {
                let full = format!("{path}.{local}");
                let shown = format!("{PEFT_PREFIX}{full}");
                expected.push(((full, Slot::Full), p.dims(), shown));
            }
        }
    }
    let by_slot: HashMap<(String, Slot), Vec<usize>> = expected
        .iter()
        .map(|(k, dims, _)| (k.clone(), dims.clone()))
        .collect();
    // 3. every tensor in the file is expected, float, finite and of the right shape.
    let mut found: HashMap<(String, Slot), &Tensor> = HashMap::new();
    for key in &keys {
        let slot = match parse_key(key) {
            (path, Some("lora_A")) => (path, Slot::A),
            (path, Some(_)) => (path, Slot::B),
            (full, None) => (full, Slot::Full),
        };
        let Some(dims) = by_slot.get(&slot) else {
            let reason = match slot.1 {
                Slot::A | Slot::B => format!(
                    "module {:?} is not in target_modules {:?}, so no adapter is attached to it",
                    slot.0, config.target_modules
                ),
                Slot::Full => format!(
                    "{:?} is a full tensor of a module not in modules_to_save {:?}; PEFT saves such tensors only for modules_to_save",
                    slot.0, config.modules_to_save
                ),
            };
            return Err(LoraError::UnexpectedTensor {
                tensor: key.to_string(),
                path: wpath.clone(),
                reason,
            });
        };
        let t = &tensors[*key];
        if !t.dtype().is_float() {
            check_weight(key, t, &wpath)?;
        }
        if t.dims() != dims.as_slice() {
            return Err(LoraError::ShapeMismatch {
                tensor: key.to_string(),
                expected: dims.clone(),
                got: t.dims().to_vec(),
            });
        }
        check_weight(key, t, &wpath)?;
        found.insert(slot, t);
    }
    if let Some((_, _, shown)) = expected.iter().find(|(k, _, _)| !found.contains_key(k)) {
        return Err(LoraError::MissingTensor {
            tensor: shown.clone(),
            path: wpath.clone(),
        });
    }
    // 4. install; on any failure put the model back as it was.
    let saved = Snapshot::take(model, &config)?;
    let installed = install(model, &injector, &found);
    if let Err(e) = installed {
        saved.restore(model, &targets)?;
        return Err(e);
    }
    tracing::debug!(dir = %dir.display(), adapted = targets.len(), "PEFT adapter loaded");
    Ok(config)
}

/// Inject, then copy the checked values into the adapters and `modules_to_save`.
fn install<M: LoraModel + ?Sized>(
    model: &mut M,
    injector: &LoraInjector,
    found: &HashMap<(String, Slot), &Tensor>,
) -> Result<()> {
    let injection = injector.inject(model)?;
    let adapted: HashSet<&String> = injection.adapted.iter().collect();
    let value = |path: &str, slot: Slot| -> Result<&Tensor> {
        found
            .get(&(path.to_string(), slot))
            .copied()
            .ok_or_else(|| LoraError::InvalidState {
                module: path.to_string(),
                reason: "a checked tensor vanished while installing".into(),
            })
    };
    for (path, m) in model.named_modules_mut() {
        let params = match m {
            ModuleMut::Linear(l) => {
                if adapted.contains(&path) {
                    let ad = l.adapter_mut().ok_or_else(|| LoraError::InvalidState {
                        module: path.clone(),
                        reason: "adapter vanished during loading".into(),
                    })?;
                    ad.a().set(&path, value(&path, Slot::A)?)?;
                    ad.b().set(&path, value(&path, Slot::B)?)?;
                }
                l.base_params_mut()
            }
            ModuleMut::Params(ps) => ps,
        };
        if injection.modules_to_save.contains(&path) {
            for (local, p) in params {
                let full = format!("{path}.{local}");
                p.set(&full, value(&full, Slot::Full)?)?;
            }
        }
    }
    Ok(())
}

/// What [`load_adapter`] may change, saved so that a failed install can be undone: every base
/// parameter's trainable flag, and copies of the `modules_to_save` values.
struct Snapshot {
    trainable: Vec<(String, bool)>,
    values: Vec<(String, Tensor)>,
}

impl Snapshot {
    fn take<M: LoraModel + ?Sized>(model: &mut M, config: &LoraConfig) -> Result<Self> {
        let mut trainable = Vec::new();
        let mut values = Vec::new();
        for (name, p) in crate::model::named_base_params_mut(model) {
            trainable.push((name.clone(), p.is_trainable()));
            let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m);
            if config.is_module_to_save(module) {
                values.push((name, p.var().as_detached_tensor().copy()?));
            }
        }
        Ok(Self { trainable, values })
    }

    fn restore<M: LoraModel + ?Sized>(
        self,
        model: &mut M,
        targets: &HashSet<String>,
    ) -> Result<()> {
        for (path, lin) in crate::model::named_linears_mut(model) {
            if targets.contains(&path) {
                lin.remove_adapter()?;
            }
        }
        let flags: HashMap<String, bool> = self.trainable.into_iter().collect();
        let values: HashMap<String, Tensor> = self.values.into_iter().collect();
        for (name, p) in crate::model::named_base_params_mut(model) {
            if let Some(t) = flags.get(&name) {
                p.set_trainable(*t);
            }
            if let Some(v) = values.get(&name) {
                p.set(&name, v)?;
            }
        }
        Ok(())
    }
}

fn first_device<M: LoraModel + ?Sized>(model: &mut M) -> Device {
    crate::model::named_base_params_mut(model)
        .first()
        .map(|(_, p)| p.var().device().clone())
        .unwrap_or(Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoraLinear, Param};
    use candle_core::Module;

    struct Two {
        fc1: LoraLinear,
        fc2: LoraLinear,
    }

    impl LoraModel for Two {
        fn named_modules_mut(&mut self) -> Vec<(String, ModuleMut<'_>)> {
            vec![
                ("fc1".into(), ModuleMut::Linear(&mut self.fc1)),
                ("fc2".into(), ModuleMut::Linear(&mut self.fc2)),
            ]
        }
    }

    /// The undo path of `load_adapter`: whatever an install did (adapters, flags, values of
    /// `modules_to_save`), restoring the snapshot gives back the same model.
    #[test]
    fn snapshot_restore_undoes_an_install() {
        let dev = Device::Cpu;
        let mut rng = forge_linalg::seeded_rng(1);
        let mut m = Two {
            fc1: LoraLinear::new_random(3, 4, true, 0.5, &dev, &mut rng).unwrap(),
            fc2: LoraLinear::new_random(4, 2, true, 0.5, &dev, &mut rng).unwrap(),
        };
        let x = Tensor::ones((2, 3), candle_core::DType::F32, &dev).unwrap();
        let out = |m: &Two| -> Vec<Vec<f32>> {
            m.fc2
                .forward(&m.fc1.forward(&x).unwrap())
                .unwrap()
                .to_vec2()
                .unwrap()
        };
        let before = out(&m);
        let cfg = LoraConfig::new(2, 4.0, &["fc1"]).with_modules_to_save(&["fc2"]);
        let snap = Snapshot::take(&mut m, &cfg).unwrap();
        let inj = LoraInjector::new(cfg).unwrap();
        inj.inject(&mut m).unwrap();
        let b = m.fc1.adapter().unwrap().b().dims();
        let ones = Tensor::ones(b, candle_core::DType::F32, &dev).unwrap();
        m.fc1.adapter().unwrap().b().set("b", &ones).unwrap();
        let w: &Param = m.fc2.weight();
        w.set(
            "w",
            &Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap(),
        )
        .unwrap();
        assert_ne!(out(&m), before);
        let targets: HashSet<String> = ["fc1".to_string()].into();
        snap.restore(&mut m, &targets).unwrap();
        assert_eq!(out(&m), before);
        assert!(m.fc1.adapter().is_none());
        assert!(m.fc1.weight().is_trainable() && m.fc2.weight().is_trainable());
    }
}
