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

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
///
/// # Errors
/// [`LoraError::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Serialise named tensors to safetensors bytes (metadata `{"format": "pt"}`, as PyTorch writes).
///
/// # Errors
/// [`LoraError::Corrupt`] if serialisation fails (e.g. duplicate names).
pub fn safetensors_bytes(tensors: &[(String, Tensor)], path: &Path) -> Result<Vec<u8>> {
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(contiguous.iter().map(|(n, t)| (n.as_str(), t)), Some(meta)).map_err(
        |e| LoraError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    )
}

/// Read a safetensors file into named tensors on `device`.
///
/// # Errors
/// [`LoraError::Io`] when the file cannot be read (e.g. missing), [`LoraError::Corrupt`] when it
/// is not valid safetensors.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| LoraError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
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
    let wpath = dir.join(ADAPTER_WEIGHTS);
    write_atomic(&wpath, &safetensors_bytes(&sd, &wpath)?)?;
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

/// Load a PEFT adapter folder into `model`: inject adapters per its `adapter_config.json`, then
/// set A, B and the `modules_to_save` tensors from `adapter_model.safetensors`. Returns the config.
///
/// # Errors
/// [`LoraError::Io`] / [`LoraError::Corrupt`] for missing or corrupt files;
/// [`LoraError::ArchitectureMismatch`] when the file names a module the model does not have
/// (an adapter for another architecture); [`LoraError::MissingTensor`] when an adapted module has
/// no A or B in the file; [`LoraError::ShapeMismatch`] naming the tensor.
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
    // 2. inject as the config says, then copy values.
    let injection = LoraInjector::new(config.clone())?.inject(model)?;
    let adapted: HashSet<&String> = injection.adapted.iter().collect();
    let by_path: HashMap<(String, Option<&'static str>), &String> =
        keys.iter().map(|k| (parse_key(k), *k)).collect();
    let get =
        |path: &str, kind: Option<&'static str>, shown: String| -> Result<(&String, &Tensor)> {
            let key = by_path
                .get(&(path.to_string(), kind))
                .ok_or(LoraError::MissingTensor {
                    tensor: shown,
                    path: wpath.clone(),
                })?;
            Ok((key, &tensors[*key]))
        };
    for (path, m) in model.named_modules_mut() {
        match m {
            ModuleMut::Linear(l) => {
                if adapted.contains(&path) {
                    let ad = l.adapter_mut().ok_or_else(|| LoraError::InvalidState {
                        module: path.clone(),
                        reason: "adapter vanished during loading".into(),
                    })?;
                    let (ka, ta) = get(
                        &path,
                        Some("lora_A"),
                        format!("{PEFT_PREFIX}{path}.lora_A.weight"),
                    )?;
                    ad.a().set(ka, ta)?;
                    let (kb, tb) = get(
                        &path,
                        Some("lora_B"),
                        format!("{PEFT_PREFIX}{path}.lora_B.weight"),
                    )?;
                    ad.b().set(kb, tb)?;
                }
                if injection.modules_to_save.contains(&path) {
                    for (local, p) in l.base_params_mut() {
                        let full = format!("{path}.{local}");
                        let (k, t) = get(&full, None, format!("{PEFT_PREFIX}{full}"))?;
                        p.set(k, t)?;
                    }
                }
            }
            ModuleMut::Params(ps) => {
                if injection.modules_to_save.contains(&path) {
                    for (local, p) in ps {
                        let full = format!("{path}.{local}");
                        let (k, t) = get(&full, None, format!("{PEFT_PREFIX}{full}"))?;
                        p.set(k, t)?;
                    }
                }
            }
        }
    }
    tracing::debug!(dir = %dir.display(), adapted = injection.adapted.len(), "PEFT adapter loaded");
    Ok(config)
}

fn first_device<M: LoraModel + ?Sized>(model: &mut M) -> Device {
    crate::model::named_base_params_mut(model)
        .first()
        .map(|(_, p)| p.var().device().clone())
        .unwrap_or(Device::Cpu)
}
