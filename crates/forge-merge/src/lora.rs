//! LoRA soups (Huang et al. 2023, "LoraHub"; Prabhakar et al. 2024, "LoRA Soups"): combine
//! several PEFT adapters of one base model into one adapter.
//!
//! Adapters are combined through their per-module updates `delta_W = s * B A` (s = alpha / r,
//! or alpha / sqrt(r) with rsLoRA), never by averaging `A` and `B` separately: the average of
//! the factors, `(sum w_i B_i)(sum w_j A_j)`, contains cross terms `B_i A_j` that neither adapter
//! learned. The result is
//!
//! - exact, without re-compression: `A = [A_1; A_2; ...]`, `B = [w_1 s_1 B_1, w_2 s_2 B_2, ...]`
//!   (rank = sum of ranks, `lora_alpha = r`, so the scaling is 1 and `B A = sum_i w_i s_i B_i A_i`);
//! - or re-compressed to rank `k` by a truncated SVD of each module's combined update
//!   (`B = U_k sqrt(S_k)`, `A = sqrt(S_k) V_k^T`), the best rank-k approximation (Eckart-Young).
//!
//! `modules_to_save` tensors (e.g. a classifier trained in full) are averaged with the normalised
//! weights. The result is saved in PEFT's layout (`adapter_model.safetensors` with PEFT's key
//! names, `adapter_config.json`), atomically.

use crate::error::{MergeError, Result};
use candle_core::{DType, Device, Tensor};
use forge_linalg::io::{pt_metadata, write_atomic, write_safetensors, SafeTensorsFile};
use forge_lora::io::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use forge_lora::LoraConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// PEFT's prefix of adapter keys.
const PEFT_PREFIX: &str = "base_model.model.";

/// One adapter read from a PEFT folder.
#[derive(Debug)]
pub struct Adapter {
    /// The folder.
    pub label: String,
    /// Its config.
    pub config: LoraConfig,
    /// Module path -> (A `[r, in]`, B `[out, r]`), f32 on CPU.
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
    /// Full tensors of `modules_to_save` (PEFT key without prefix) -> tensor.
    pub full: BTreeMap<String, Tensor>,
}

/// Split a PEFT key into (module path, Some("A"|"B")) or (full tensor name, None).
fn parse_key(key: &str) -> (String, Option<char>) {
    let k = key.strip_prefix(PEFT_PREFIX).unwrap_or(key);
    for (kind, c) in [("lora_A", 'A'), ("lora_B", 'B')] {
        for suffix in [format!(".{kind}.weight"), format!(".{kind}.default.weight")] {
            if let Some(path) = k.strip_suffix(suffix.as_str()) {
                return (path.to_string(), Some(c));
            }
        }
    }
    (k.replace(".modules_to_save.default.", "."), None)
}

impl Adapter {
    /// Read a PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    ///
    /// # Errors
    /// forge-lora's config validation errors; forge-linalg's typed errors for a missing,
    /// corrupt or truncated weights file; [`MergeError::Adapter`] when a module has A without B
    /// (or the reverse) or their shapes do not chain.
    pub fn read(dir: &Path) -> Result<Self> {
        let label = dir.display().to_string();
        let config = forge_lora::read_adapter_config(dir)?;
        let f = SafeTensorsFile::open(dir.join(ADAPTER_WEIGHTS))?;
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        let mut full = BTreeMap::new();
        for name in f.names() {
            let t = f.tensor_as(name, DType::F32, &Device::Cpu)?;
            match parse_key(name) {
                (path, Some('A')) => {
                    a.insert(path, t);
                }
                (path, Some(_)) => {
                    b.insert(path, t);
                }
                (path, None) => {
                    full.insert(path, t);
                }
            }
        }
        let mut modules = BTreeMap::new();
        for (path, ta) in a {
            let tb = b.remove(&path).ok_or_else(|| MergeError::Adapter {
                adapter: label.clone(),
                reason: format!("module {path} has lora_A but no lora_B"),
            })?;
            let (ra, _) = ta.dims2()?;
            let (_, rb) = tb.dims2()?;
            if ra != rb {
                return Err(MergeError::Adapter {
                    adapter: label.clone(),
                    reason: format!("module {path}: lora_A has rank {ra} but lora_B has rank {rb}"),
                });
            }
            modules.insert(path, (ta, tb));
        }
        if let Some(path) = b.keys().next() {
            return Err(MergeError::Adapter {
                adapter: label,
                reason: format!("module {path} has lora_B but no lora_A"),
            });
        }
        Ok(Self {
            label,
            config,
            modules,
            full,
        })
    }

    /// The update `s * B A` of one module.
    ///
    /// # Shapes
    /// `[out, in]`.
    ///
    /// # Errors
    /// candle errors.
    pub fn delta(&self, module: &str) -> Result<Option<Tensor>> {
        Ok(match self.modules.get(module) {
            Some((a, b)) => Some((b.matmul(a)? * self.config.scaling())?),
            None => None,
        })
    }
}

/// What [`merge_lora_adapters`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSoupReport {
    /// Rank of the written adapter.
    pub rank: usize,
    /// Modules combined.
    pub modules: usize,
    /// Per module: relative Frobenius error of the rank-`k` re-compression
    /// (`||delta - B A|| / ||delta||`; 0 without re-compression).
    pub compression_error: Vec<(String, f64)>,
}

/// Combine PEFT adapters of one base model into one adapter in `out_dir` (see the module docs).
/// `weights` are the soup's mixing weights (not normalised for the LoRA updates, as in
/// LoraHub: `delta = sum_i w_i delta_i`; `modules_to_save` tensors are averaged with
/// `w_i / sum w`). `rank`: re-compress each module's combined update to this rank by SVD; `None`
/// keeps the exact concatenated form.
///
/// # Errors
/// [`MergeError::WrongInputs`] for no adapter or a weight count that differs;
/// [`MergeError::OutOfRange`] for non-finite weights or a rank of 0 or above a module's
/// `min(out, in)`; [`MergeError::Adapter`] for adapters of different module shapes;
/// read errors of [`Adapter::read`]; I/O errors. Nothing is written on error.
pub fn merge_lora_adapters(
    adapters: &[&Path],
    weights: &[f64],
    rank: Option<usize>,
    out_dir: &Path,
) -> Result<LoraSoupReport> {
    let read: Vec<Adapter> = adapters
        .iter()
        .map(|d| Adapter::read(d))
        .collect::<Result<_>>()?;
    merge_adapters(&read, weights, rank, out_dir)
}

/// [`merge_lora_adapters`] over adapters already read.
///
/// # Errors
/// As [`merge_lora_adapters`].
pub fn merge_adapters(
    adapters: &[Adapter],
    weights: &[f64],
    rank: Option<usize>,
    out_dir: &Path,
) -> Result<LoraSoupReport> {
    if adapters.is_empty() || weights.len() != adapters.len() {
        return Err(MergeError::WrongInputs {
            method: "merge_lora_adapters".into(),
            expected: format!("one weight per adapter ({} adapters)", adapters.len()),
            got: format!("{} weights", weights.len()),
        });
    }
    for (i, &w) in weights.iter().enumerate() {
        if !w.is_finite() {
            return Err(MergeError::OutOfRange {
                name: format!("weight of adapter {}", adapters[i].label),
                value: w,
                reason: "must be finite".into(),
            });
        }
    }
    if rank == Some(0) {
        return Err(MergeError::OutOfRange {
            name: "rank".into(),
            value: 0.0,
            reason: "must be >= 1".into(),
        });
    }
    let mut modules: Vec<String> = adapters
        .iter()
        .flat_map(|a| a.modules.keys().cloned())
        .collect();
    modules.sort();
    modules.dedup();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut errors = Vec::new();
    let mut out_rank = 0usize;
    for m in &modules {
        // Shapes must agree across the adapters that have the module.
        let mut shape: Option<(usize, usize, String)> = None;
        for ad in adapters {
            if let Some((a, b)) = ad.modules.get(m) {
                let (o, i) = (b.dims2()?.0, a.dims2()?.1);
                match &shape {
                    None => shape = Some((o, i, ad.label.clone())),
                    Some((o0, i0, l0)) if (*o0, *i0) != (o, i) => {
                        return Err(MergeError::Adapter {
                            adapter: ad.label.clone(),
                            reason: format!(
                                "module {m} has update shape [{o}, {i}] but [{o0}, {i0}] in {l0}"
                            ),
                        })
                    }
                    _ => {}
                }
            }
        }
        let (out_f, in_f, _) = shape.expect("module came from an adapter");
        let (a_cat, b_cat) = match rank {
            None => {
                let mut a_parts = Vec::new();
                let mut b_parts = Vec::new();
                for (ad, &w) in adapters.iter().zip(weights) {
                    if let Some((a, b)) = ad.modules.get(m) {
                        a_parts.push(a.clone());
                        b_parts.push((b * (w * ad.config.scaling()))?);
                    }
                }
                errors.push((m.clone(), 0.0));
                (Tensor::cat(&a_parts, 0)?, Tensor::cat(&b_parts, 1)?)
            }
            Some(k) => {
                if k > out_f.min(in_f) {
                    return Err(MergeError::OutOfRange {
                        name: format!("rank for module {m}"),
                        value: k as f64,
                        reason: format!("must be <= min(out, in) = {}", out_f.min(in_f)),
                    });
                }
                let mut delta = Tensor::zeros((out_f, in_f), DType::F64, &Device::Cpu)?;
                for (ad, &w) in adapters.iter().zip(weights) {
                    if let Some(d) = ad.delta(m)? {
                        delta = (delta + (d.to_dtype(DType::F64)? * w)?)?;
                    }
                }
                let (u, s, vt) = forge_linalg::dense::svd(&delta)?;
                let sq = s.narrow(0, 0, k)?.sqrt()?;
                let b = u.narrow(1, 0, k)?.broadcast_mul(&sq.unsqueeze(0)?)?;
                let a = vt.narrow(0, 0, k)?.broadcast_mul(&sq.unsqueeze(1)?)?;
                let approx = b.matmul(&a)?;
                let num = (&delta - &approx)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?
                    .sqrt();
                let den = delta.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
                errors.push((m.clone(), if den > 0.0 { num / den } else { 0.0 }));
                (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?)
            }
        };
        let r = a_cat.dims2()?.0;
        if out_rank != 0 && r != out_rank {
            return Err(MergeError::Adapter {
                adapter: "(soup)".into(),
                reason: format!(
                    "module {m} would get rank {r} but others {out_rank}: adapters target \
                     different module sets; re-compress to one rank with `rank`"
                ),
            });
        }
        out_rank = r;
        tensors.push((
            format!("{PEFT_PREFIX}{m}.lora_A.weight"),
            a_cat.contiguous()?,
        ));
        tensors.push((
            format!("{PEFT_PREFIX}{m}.lora_B.weight"),
            b_cat.contiguous()?,
        ));
    }
    // modules_to_save: weighted average with normalised weights.
    let wsum: f64 = weights.iter().sum();
    let mut full_names: Vec<String> = adapters
        .iter()
        .flat_map(|a| a.full.keys().cloned())
        .collect();
    full_names.sort();
    full_names.dedup();
    for name in full_names {
        let mut acc: Option<Tensor> = None;
        let mut wseen = 0.0;
        for (ad, &w) in adapters.iter().zip(weights) {
            if let Some(t) = ad.full.get(&name) {
                let term = (t.to_dtype(DType::F64)? * w)?;
                acc = Some(match acc {
                    None => term,
                    Some(a) if a.dims() == term.dims() => (a + term)?,
                    Some(a) => {
                        return Err(MergeError::Adapter {
                            adapter: ad.label.clone(),
                            reason: format!(
                                "modules_to_save tensor {name} has shape {:?}, others {:?}",
                                term.dims(),
                                a.dims()
                            ),
                        })
                    }
                });
                wseen += w;
            }
        }
        let denom = if wseen != 0.0 { wseen } else { wsum };
        if let Some(a) = acc {
            tensors.push((
                format!("{PEFT_PREFIX}{name}"),
                (a / denom)?.to_dtype(DType::F32)?,
            ));
        }
    }
    let mut config = adapters[0].config.clone();
    config.r = out_rank.max(1);
    config.lora_alpha = config.r as f64;
    config.use_rslora = false;
    let mut mts: Vec<String> = adapters
        .iter()
        .flat_map(|a| a.config.modules_to_save.clone().unwrap_or_default())
        .collect();
    mts.sort();
    mts.dedup();
    config.modules_to_save = (!mts.is_empty()).then_some(mts);
    config.validate()?;
    let json = serde_json::to_string_pretty(&config).map_err(|e| MergeError::Config {
        path: out_dir.join(ADAPTER_CONFIG).display().to_string(),
        reason: e.to_string(),
    })?;
    write_safetensors(
        &out_dir.join(ADAPTER_WEIGHTS),
        &tensors,
        Some(pt_metadata()),
    )?;
    write_atomic(&out_dir.join(ADAPTER_CONFIG), json.as_bytes())?;
    Ok(LoraSoupReport {
        rank: out_rank,
        modules: modules.len(),
        compression_error: errors,
    })
}
