//! File-based merges: models read from safetensors folders (single file or sharded with
//! `model.safetensors.index.json`), memory-mapped and streamed tensor by tensor; output written
//! atomically (every shard, the index and `config.json` are committed only once the whole merge
//! has succeeded), sharded when larger than [`WriteOptions::max_shard_bytes`].

use crate::config::MergeConfig;
use crate::error::{io_err, MergeError, Result};
use crate::merge::{decode, execute, plan, Action, Inputs, MergeReport, TensorSource};
use crate::params::num_layers;
use forge_linalg::io::{
    pt_metadata, write_atomic, AtomicFile, SafeTensorsFile, SafeTensorsWriter, TensorSpec,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The single-file weights name of a Hugging Face checkpoint.
pub const WEIGHTS_NAME: &str = "model.safetensors";
/// The index of a sharded Hugging Face checkpoint.
pub const INDEX_NAME: &str = "model.safetensors.index.json";
/// The model config copied next to the merged weights.
pub const CONFIG_NAME: &str = "config.json";

/// A model on disk: one safetensors file, or a folder with `model.safetensors` or a sharded
/// checkpoint (`model.safetensors.index.json` + shards). Files are memory-mapped and only their
/// headers are read when opening.
#[derive(Debug)]
pub struct ModelFiles {
    label: String,
    dir: PathBuf,
    files: Vec<SafeTensorsFile>,
    /// tensor name -> index into `files`, in checkpoint order.
    order: Vec<(String, usize)>,
    where_is: HashMap<String, usize>,
}

impl ModelFiles {
    /// Open `path` (a `.safetensors` file or a checkpoint folder) under the label `label`.
    ///
    /// # Errors
    /// [`MergeError::Io`] when the folder has neither `model.safetensors` nor an index;
    /// [`MergeError::Config`] for a malformed index; forge-linalg's typed errors naming the
    /// file for a corrupt or truncated safetensors file.
    pub fn open_as(path: &Path, label: impl Into<String>) -> Result<Self> {
        let label = label.into();
        let (dir, paths): (PathBuf, Vec<PathBuf>) = if path.is_file() {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                vec![path.to_path_buf()],
            )
        } else if path.join(WEIGHTS_NAME).is_file() {
            (path.to_path_buf(), vec![path.join(WEIGHTS_NAME)])
        } else if path.join(INDEX_NAME).is_file() {
            let ipath = path.join(INDEX_NAME);
            let text = std::fs::read_to_string(&ipath).map_err(|e| io_err(&ipath, e))?;
            let idx: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| MergeError::Config {
                    path: ipath.display().to_string(),
                    reason: e.to_string(),
                })?;
            let map = idx
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| MergeError::Config {
                    path: ipath.display().to_string(),
                    reason: "no weight_map object".into(),
                })?;
            let mut shards: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            shards.sort();
            shards.dedup();
            (
                path.to_path_buf(),
                shards.iter().map(|s| path.join(s)).collect(),
            )
        } else {
            return Err(io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no {WEIGHTS_NAME} or {INDEX_NAME} (only safetensors checkpoints are read)"
                    ),
                ),
            ));
        };
        let files: Vec<SafeTensorsFile> = paths
            .iter()
            .map(SafeTensorsFile::open)
            .collect::<std::result::Result<_, _>>()?;
        let mut order = Vec::new();
        let mut where_is = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for n in f.names() {
                if where_is.insert(n.to_string(), i).is_none() {
                    order.push((n.to_string(), i));
                }
            }
        }
        Ok(Self {
            label,
            dir,
            files,
            order,
            where_is,
        })
    }

    /// Open `path`, labelled by the path as written.
    ///
    /// # Errors
    /// As [`open_as`](Self::open_as).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_as(path, path.display().to_string())
    }

    /// The folder of the checkpoint.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Total parameters (elements of all tensors).
    pub fn num_elements(&self) -> usize {
        self.specs().iter().map(TensorSpec::elem_count).sum()
    }

    fn file_of(&self, name: &str) -> Result<&SafeTensorsFile> {
        self.where_is
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| MergeError::MissingTensor {
                model: self.label.clone(),
                tensor: name.to_string(),
            })
    }
}

impl TensorSource for ModelFiles {
    fn label(&self) -> &str {
        &self.label
    }
    fn specs(&self) -> Vec<TensorSpec> {
        self.order
            .iter()
            .filter_map(|(n, i)| self.files[*i].info(n).cloned())
            .collect()
    }
    fn spec(&self, name: &str) -> Option<TensorSpec> {
        self.where_is
            .get(name)
            .and_then(|&i| self.files[i].info(name).cloned())
    }
    fn read_f32(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let f = self.file_of(name)?;
        let (spec, bytes) = f.raw(name)?;
        decode(bytes, spec.dtype).ok_or_else(|| MergeError::UnsupportedDtype {
            model: self.label.clone(),
            tensor: name.to_string(),
            dtype: format!("{:?}", spec.dtype),
        })
    }
    fn read_raw(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let f = self.file_of(name)?;
        Ok(Cow::Borrowed(f.raw(name)?.1))
    }
    fn release(&self, name: &str) {
        if let Ok(f) = self.file_of(name) {
            // Best effort: failing to drop pages only costs memory.
            let _ = f.release(name);
        }
    }
}

/// Options of [`merge_files`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Largest shard in bytes before the output is split (default 5 GB, as `transformers`'
    /// `save_pretrained`). A single tensor larger than this gets a shard of its own.
    pub max_shard_bytes: u64,
    /// Copy `config.json` from the base model (or the first model) into the output.
    pub copy_config: bool,
}

/// Default shard size, as `transformers`' `save_pretrained(max_shard_size="5GB")`.
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            max_shard_bytes: DEFAULT_MAX_SHARD_BYTES,
            copy_config: true,
        }
    }
}

/// Resolve a config's model names as paths relative to `root` (mergekit resolves them
/// relative to the working directory) and open them.
///
/// # Errors
/// As [`ModelFiles::open_as`], naming the model.
pub fn open_inputs(config: &MergeConfig, root: &Path) -> Result<Vec<ModelFiles>> {
    config
        .input_names()
        .into_iter()
        .map(|name| {
            let p = Path::new(&name);
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            };
            ModelFiles::open_as(&path, name)
        })
        .collect()
}

/// Merge checkpoints on disk into `out_dir`, streaming tensor by tensor: memory stays at the
/// tensors of one name across the inputs (plus their merge), never whole models. Model names in
/// `config` are paths relative to `root`.
///
/// The output is `model.safetensors` (or shards `model-0000k-of-0000n.safetensors` and
/// `model.safetensors.index.json` past [`WriteOptions::max_shard_bytes`]) and the source
/// `config.json`. Nothing is written unless the whole merge succeeds: shards are written to
/// temporary files and all renamed into place at the end.
///
/// # Errors
/// Everything [`crate::merge_state_dicts`] returns, plus I/O errors naming the file. On error,
/// `out_dir` holds no new or partial file.
pub fn merge_files(
    config: &MergeConfig,
    root: &Path,
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<MergeReport> {
    let models = open_inputs(config, root)?;
    merge_opened(config, &models, out_dir, opts)
}

/// [`merge_files`] over models already opened (e.g. with custom labels).
///
/// # Errors
/// As [`merge_files`].
pub fn merge_opened(
    config: &MergeConfig,
    models: &[ModelFiles],
    out_dir: &Path,
    opts: &WriteOptions,
) -> Result<MergeReport> {
    if opts.max_shard_bytes == 0 {
        return Err(MergeError::OutOfRange {
            name: "max_shard_bytes".into(),
            value: 0.0,
            reason: "must be > 0".into(),
        });
    }
    let sources: Vec<&dyn TensorSource> = models.iter().map(|m| m as &dyn TensorSource).collect();
    let inputs = Inputs::new(config, &sources)?;
    let (planned, report) = plan(config, &inputs)?;
    let layers = num_layers(planned.iter().map(|p| p.spec.name.as_str()));
    let kept: Vec<&crate::merge::Planned> = planned
        .iter()
        .filter(|p| !matches!(p.action, Action::Skip))
        .collect();
    // Shard assignment, greedy in output order.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (k, p) in kept.iter().enumerate() {
        let n = p.spec.nbytes() as u64;
        if size > 0 && size + n > opts.max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("non-empty").push(k);
        size += n;
    }
    let n_shards = shards.len();
    let shard_name = |i: usize| {
        if n_shards == 1 {
            WEIGHTS_NAME.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, n_shards)
        }
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, e))?;
    let mut pending: Vec<AtomicFile> = Vec::with_capacity(n_shards + 2);
    let mut weight_map = BTreeMap::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let specs: Vec<TensorSpec> = shard.iter().map(|&k| kept[k].spec.clone()).collect();
        let mut w =
            SafeTensorsWriter::create(&out_dir.join(shard_name(i)), specs, Some(pt_metadata()))?;
        for &k in shard {
            let p = kept[k];
            let bytes = execute(config, &inputs, p, layers)?;
            w.write_raw(&bytes)?;
            weight_map.insert(p.spec.name.clone(), shard_name(i));
            total += bytes.len() as u64;
        }
        pending.push(w.into_pending()?);
    }
    let index_path = out_dir.join(INDEX_NAME);
    if n_shards > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": total},
            "weight_map": weight_map,
        });
        let mut f = AtomicFile::create(&index_path)?;
        let text = serde_json::to_string_pretty(&index).map_err(|e| MergeError::Config {
            path: index_path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| io_err(&index_path, e))?;
        pending.push(f);
    }
    let config_src = if opts.copy_config {
        let reference = inputs.participants[0];
        models
            .get(reference)
            .map(|m| m.dir().join(crate::files::CONFIG_NAME))
            .filter(|p| p.is_file())
    } else {
        None
    };
    let config_text = config_src
        .as_ref()
        .map(|p| std::fs::read(p).map_err(|e| io_err(p, e)))
        .transpose()?;
    // Everything computed: commit.
    for f in pending {
        f.commit()?;
    }
    if let Some(text) = config_text {
        write_atomic(&out_dir.join(CONFIG_NAME), &text)?;
    }
    // Remove what a previous merge with another layout left behind.
    if n_shards == 1 && index_path.exists() {
        std::fs::remove_file(&index_path).map_err(|e| io_err(&index_path, e))?;
    }
    if let Ok(rd) = std::fs::read_dir(out_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_shard = name.starts_with("model-")
                && name.ends_with(".safetensors")
                && !weight_map.values().any(|v| v == &name);
            let stale_single = n_shards > 1 && name == WEIGHTS_NAME;
            if stale_shard || stale_single {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    tracing::info!(
        method = %config.merge_method,
        tensors = kept.len(),
        shards = n_shards,
        bytes = total,
        "merged into {}",
        out_dir.display()
    );
    Ok(report)
}
