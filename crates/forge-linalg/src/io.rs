//! Shared file I/O for every Forge crate that writes: atomic writes and memory-mapped,
//! tensor-by-tensor safetensors reading and writing.
//!
//! - [`write_atomic`] / [`write_atomic_with`] / [`AtomicFile`]: the one atomic-write mechanism.
//!   Data goes to a uniquely named temporary file (prefix [`TEMP_PREFIX`]) in the target's own
//!   folder, is flushed and `fsync`ed, renamed over the target (`tempfile`'s `persist`), and the
//!   folder is `fsync`ed so the rename itself survives a crash. A failed or interrupted write
//!   leaves the previous file (if any) untouched and removes its temporary file.
//! - [`SafeTensorsFile`]: a memory-mapped [safetensors](https://github.com/huggingface/safetensors)
//!   file. Opening it reads and validates the header only (names, shapes, dtypes, offsets, and
//!   that the file is exactly as long as the header says); [`SafeTensorsFile::tensor`] then
//!   copies one tensor at a time out of the map, so memory stays at one tensor, not a model.
//! - [`SafeTensorsWriter`]: a streaming safetensors writer: the header is written first from
//!   [`TensorSpec`]s, then the data tensor by tensor, atomically.
//!
//! Tensors are converted to candle [`Tensor`]s with their dtype preserved for `F32`, `F16` and
//! `BF16`; other dtypes are listed and can be copied as raw bytes
//! ([`SafeTensorsFile::raw`], [`SafeTensorsWriter::write_raw`]) but
//! [`SafeTensorsFile::tensor`] refuses them with [`LinalgError::UnsupportedDtype`].
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use forge_linalg::io::{write_safetensors, SafeTensorsFile};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("model.safetensors");
//! let w = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
//! write_safetensors(&path, &[("w".to_string(), w)], None)?;
//! let f = SafeTensorsFile::open(&path)?;
//! assert_eq!(f.info("w").unwrap().shape, vec![2, 2]);
//! let back: Vec<Vec<f32>> = f.tensor("w", &Device::Cpu)?.to_vec2()?;
//! assert_eq!(back, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
//! # Ok::<(), forge_linalg::LinalgError>(())
//! ```

use crate::error::{LinalgError, Result};
use candle_core::{DType, Device, Tensor};
use half::slice::HalfFloatSliceExt;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files [`AtomicFile`] creates next to their target.
pub const TEMP_PREFIX: &str = ".forge-tmp-";

/// Size of the write buffer in front of the temporary file: large enough that tensor-sized writes
/// go straight through, small enough not to matter for memory.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Largest safetensors header accepted (the limit of the reference implementation, 100 MB).
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Bytes of the little-endian header-length prefix of a safetensors file.
const LEN_PREFIX: usize = 8;

fn io_err(path: &Path, source: std::io::Error) -> LinalgError {
    LinalgError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> LinalgError {
    LinalgError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The folder a path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `fsync` a folder so that a rename inside it is durable. A no-op where folders cannot be opened
/// for syncing (Windows).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A file being written atomically: bytes go to a temporary file in the target's folder;
/// [`AtomicFile::commit`] syncs it and renames it over the target. Dropping it without committing
/// (an error, a panic) deletes the temporary file and leaves the target untouched.
///
/// The file is created with mode `0644` on Unix (results and checkpoints are meant to be shared),
/// not `tempfile`'s private `0600`.
pub struct AtomicFile {
    target: PathBuf,
    writer: BufWriter<tempfile::NamedTempFile>,
}

impl std::fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFile")
            .field("target", &self.target)
            .field("temp", &self.writer.get_ref().path())
            .finish()
    }
}

impl AtomicFile {
    /// Start writing `path`: creates its parent folder if needed and a uniquely named temporary
    /// file (prefix [`TEMP_PREFIX`]) in it.
    ///
    /// # Errors
    /// [`LinalgError::Io`] naming the folder when it cannot be created or written.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        clean_stale_temp_files(dir);
        let prefix = own_temp_prefix();
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(dir).map_err(|e| io_err(dir, e))?;
        Ok(Self {
            target: path.to_path_buf(),
            writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, tmp),
        })
    }

    /// The path this file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flush, `fsync` the file, rename it over the target, `fsync` the folder.
    ///
    /// # Errors
    /// [`LinalgError::Io`] naming the target; the temporary file is removed on failure.
    pub fn commit(self) -> Result<()> {
        let target = self.target;
        let tmp = self
            .writer
            .into_inner()
            .map_err(|e| io_err(&target, e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| io_err(&target, e))?;
        tmp.persist(&target).map_err(|e| io_err(&target, e.error))?;
        let dir = parent_dir(&target);
        sync_dir(dir).map_err(|e| io_err(dir, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// Temporary files older than this whose writer cannot be identified are stale.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// This machine, as 8 hex digits (FNV-1a of the host name): temporary files of another machine
/// sharing the folder (NFS, a cluster's scratch space) are never judged by process id.
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let mut h: u32 = 0x811c_9dc5;
        for b in host.trim().bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    })
}

/// `.forge-tmp-<host>-<pid>-`: the prefix of this process's temporary files.
fn own_temp_prefix() -> String {
    format!("{TEMP_PREFIX}{}-{}-", host_tag(), std::process::id())
}

/// Whether process `pid` of this machine is alive. Linux reads `/proc`; elsewhere every process
/// counts as alive (only the age rule of [`clean_stale_temp_files`] applies).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes Forge's own stale temporary files from `dir`: leftovers of a writer that was killed
/// (SIGKILL, power loss) between creating its temporary file and renaming it. A file named
/// `.forge-tmp-<host>-<pid>-*` is stale when `<host>` is this machine and process `<pid>` no
/// longer exists; any other `.forge-tmp-*` file (older Forge versions, another machine) when it
/// has not been modified for an hour. Files of other programs are never touched. Called by
/// [`AtomicFile::create`], so the next write into a folder cleans it; returns how many files were
/// removed. Best effort: errors are ignored.
pub fn clean_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let host = host_tag();
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let mut parts = rest.splitn(3, '-');
        let owner = match (
            parts.next(),
            parts.next().map(str::parse::<u32>),
            parts.next(),
        ) {
            (Some(h), Some(Ok(pid)), Some(_)) if h == host => Some(pid),
            _ => None,
        };
        let stale = match owner {
            Some(pid) => pid != std::process::id() && !process_alive(pid),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= STALE_TEMP_AGE),
        };
        if stale && std::fs::remove_file(e.path()).is_ok() {
            tracing::info!(file = %e.path().display(), "removed a stale temporary file");
            removed += 1;
        }
    }
    removed
}

/// Write `bytes` to `path` atomically (see [`AtomicFile`]). Creates the parent folder if needed.
///
/// # Errors
/// [`LinalgError::Io`] naming the path or its folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Write `path` atomically from a closure that streams into a buffered writer. If the closure
/// fails, the temporary file is removed and the target left untouched.
///
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("log.csv");
/// forge_linalg::io::write_atomic_with(&path, |w| {
///     writeln!(w, "step,loss")?;
///     (0..3).try_for_each(|i| writeln!(w, "{i},{}", 1.0 / (i + 1) as f64))
/// })?;
/// assert!(std::fs::read_to_string(&path).unwrap().starts_with("step,loss\n0,1\n"));
/// # Ok::<(), forge_linalg::LinalgError>(())
/// ```
///
/// # Errors
/// [`LinalgError::Io`] naming the path (also for an error returned by the closure).
pub fn write_atomic_with<F>(path: &Path, f: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let mut file = AtomicFile::create(path)?;
    f(&mut file).map_err(|e| io_err(path, e))?;
    file.commit()
}

/// The candle dtype of a safetensors dtype, for the dtypes Forge computes with (`F32`, `F16`,
/// `BF16`); `None` for the others.
pub fn candle_dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// The safetensors dtype of a candle dtype.
pub fn safetensors_dtype(dtype: DType) -> Dtype {
    dtype.into()
}

/// Name, dtype and shape of one tensor in a safetensors file or header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name, e.g. `distilbert.transformer.layer.0.attention.q_lin.weight`.
    pub name: String,
    /// Element type as stored in the file.
    pub dtype: Dtype,
    /// Shape (row-major).
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Spec of a candle tensor under `name`.
    pub fn of(name: impl Into<String>, t: &Tensor) -> Self {
        Self {
            name: name.into(),
            dtype: t.dtype().into(),
            shape: t.dims().to_vec(),
        }
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (`elem_count * dtype size`).
    pub fn nbytes(&self) -> usize {
        self.elem_count() * self.dtype.bitsize() / 8
    }
}

/// A memory-mapped safetensors file: header parsed and validated at [`open`](Self::open), tensor
/// data read one tensor at a time.
///
/// # Safety note
/// The file is memory-mapped: if another process truncates or rewrites it while it is open, reads
/// may see the new bytes (or fault). Forge's own writers never modify a file in place (they
/// rename a new file over it), so that cannot happen between Forge processes.
pub struct SafeTensorsFile {
    path: PathBuf,
    mmap: memmap2::Mmap,
    data_start: usize,
    /// Specs in file (offset) order, with their byte ranges relative to `data_start`.
    tensors: Vec<(TensorSpec, (usize, usize))>,
    index: HashMap<String, usize>,
    metadata: Option<HashMap<String, String>>,
}

impl std::fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.mmap.len())
            .finish()
    }
}

impl SafeTensorsFile {
    /// Memory-map and validate `path`: the header must parse, offsets must be contiguous and
    /// match each tensor's shape and dtype, and the file must be exactly as long as the header
    /// says (a truncated download is reported as such).
    ///
    /// # Errors
    /// [`LinalgError::Io`] (missing or unreadable file), [`LinalgError::Corrupt`] naming the file
    /// and what is wrong with it (truncated, bad header, bad offsets, trailing bytes).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len() as usize;
        if len < LEN_PREFIX {
            return Err(corrupt(
                path,
                format!("truncated: {len} bytes, shorter than the 8-byte header length"),
            ));
        }
        // SAFETY: see the type-level note; the map is read-only and every access is bounds-checked
        // against the validated header.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, e))?;
        let mut n_bytes = [0u8; LEN_PREFIX];
        n_bytes.copy_from_slice(&mmap[..LEN_PREFIX]);
        let n = u64::from_le_bytes(n_bytes);
        if n > MAX_HEADER_BYTES as u64 {
            return Err(corrupt(
                path,
                format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"),
            ));
        }
        let n = n as usize;
        let data_start = LEN_PREFIX + n;
        if data_start > len {
            return Err(corrupt(
                path,
                format!("truncated: header declares {n} bytes but the file has {len} bytes"),
            ));
        }
        let header = std::str::from_utf8(&mmap[LEN_PREFIX..data_start])
            .map_err(|e| corrupt(path, format!("header is not UTF-8: {e}")))?;
        let meta: Metadata = serde_json::from_str(header)
            .map_err(|e| corrupt(path, format!("invalid header: {e}")))?;
        let expected = data_start + meta.data_len();
        if expected > len {
            return Err(corrupt(
                path,
                format!("truncated: header describes {expected} bytes but the file has {len}"),
            ));
        }
        if expected < len {
            return Err(corrupt(
                path,
                format!(
                    "{} trailing bytes after the last tensor (header describes {expected} bytes)",
                    len - expected
                ),
            ));
        }
        let mut tensors: Vec<(TensorSpec, (usize, usize))> = meta
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                (
                    TensorSpec {
                        name,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                    },
                    info.data_offsets,
                )
            })
            .collect();
        tensors.sort_by_key(|(_, off)| *off);
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (s.name.clone(), i))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start,
            tensors,
            index,
            metadata: meta.metadata().clone(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Whether a tensor called `name` is in the file.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.iter().map(|(s, _)| s.name.as_str())
    }

    /// Name, dtype and shape of every tensor, in file order (no data is read).
    pub fn specs(&self) -> impl Iterator<Item = &TensorSpec> + '_ {
        self.tensors.iter().map(|(s, _)| s)
    }

    /// Name, dtype and shape of one tensor.
    pub fn info(&self, name: &str) -> Option<&TensorSpec> {
        self.index.get(name).map(|&i| &self.tensors[i].0)
    }

    /// The `__metadata__` map of the header, if any (e.g. `{"format": "pt"}`).
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> usize {
        self.mmap.len() - self.data_start
    }

    /// The raw little-endian bytes of one tensor, borrowed from the map (any dtype).
    ///
    /// # Errors
    /// [`LinalgError::TensorNotFound`] naming the file and tensor.
    pub fn raw(&self, name: &str) -> Result<(&TensorSpec, &[u8])> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| LinalgError::TensorNotFound {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let (spec, (s, e)) = &self.tensors[i];
        Ok((spec, &self.mmap[self.data_start + s..self.data_start + e]))
    }

    /// Drop the mapped pages of one tensor from this process's memory after it has been read,
    /// so that streaming over a large file keeps the resident set at a few tensors (mapped pages
    /// that were read count as resident until released). Later reads fault them in again from
    /// the page cache or the file. A no-op on non-Unix targets.
    ///
    /// # Errors
    /// [`LinalgError::TensorNotFound`]; [`LinalgError::Io`] if the kernel refuses the advice.
    pub fn release(&self, name: &str) -> Result<()> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| LinalgError::TensorNotFound {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let (s, e) = self.tensors[i].1;
        if e == s {
            return Ok(());
        }
        #[cfg(unix)]
        {
            // SAFETY: the map is a private, read-only mapping of a file; MADV_DONTNEED on it only
            // discards this process's copies of clean pages, which are re-read from the file on
            // the next access. No reference into the range outlives this call's borrow of self
            // in a way that could observe anything but the file's bytes.
            unsafe {
                self.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.data_start + s,
                    e - s,
                )
            }
            .map_err(|err| io_err(&self.path, err))?;
        }
        Ok(())
    }

    /// Copy one tensor onto `device`, keeping its dtype (`F32`, `F16` or `BF16`).
    ///
    /// # Shapes
    /// As stored in the file.
    ///
    /// # Errors
    /// [`LinalgError::TensorNotFound`], or [`LinalgError::UnsupportedDtype`] for other dtypes,
    /// both naming the file and tensor.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let (spec, bytes) = self.raw(name)?;
        let dtype = candle_dtype(spec.dtype).ok_or_else(|| LinalgError::UnsupportedDtype {
            path: self.path.clone(),
            name: name.to_string(),
            dtype: format!("{:?}", spec.dtype),
        })?;
        Ok(Tensor::from_raw_buffer(bytes, dtype, &spec.shape, device)?)
    }

    /// Like [`tensor`](Self::tensor), converted to `dtype`.
    ///
    /// # Errors
    /// As [`tensor`](Self::tensor).
    pub fn tensor_as(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(self.tensor(name, device)?.to_dtype(dtype)?)
    }
}

/// Bytes of a contiguous CPU tensor's data, little-endian as safetensors stores them.
fn with_tensor_bytes<R>(t: &Tensor, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    let t = t.to_device(&Device::Cpu)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(LinalgError::InvalidArgument {
            name: "tensor",
            reason: "expected a CPU tensor after to_device(Cpu)".into(),
        });
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| LinalgError::InvalidArgument {
            name: "tensor",
            reason: "not contiguous after contiguous()".into(),
        })?;
    let bytes: &[u8] = match t.dtype() {
        DType::F32 => bytemuck::cast_slice(&cpu.as_slice::<f32>()?[start..end]),
        DType::F16 => {
            bytemuck::cast_slice(cpu.as_slice::<half::f16>()?[start..end].reinterpret_cast())
        }
        DType::BF16 => {
            bytemuck::cast_slice(cpu.as_slice::<half::bf16>()?[start..end].reinterpret_cast())
        }
        DType::F64 => bytemuck::cast_slice(&cpu.as_slice::<f64>()?[start..end]),
        DType::U8 => &cpu.as_slice::<u8>()?[start..end],
        DType::U32 => bytemuck::cast_slice(&cpu.as_slice::<u32>()?[start..end]),
        DType::I64 => bytemuck::cast_slice(&cpu.as_slice::<i64>()?[start..end]),
        DType::I32 => bytemuck::cast_slice(&cpu.as_slice::<i32>()?[start..end]),
        DType::I16 => bytemuck::cast_slice(&cpu.as_slice::<i16>()?[start..end]),
        other => {
            return Err(LinalgError::InvalidArgument {
                name: "tensor",
                reason: format!("dtype {other:?} cannot be written to safetensors by Forge"),
            })
        }
    };
    Ok(f(bytes))
}

#[cfg(not(target_endian = "little"))]
compile_error!("forge-linalg's safetensors I/O assumes a little-endian target");

/// Serialise a safetensors header (8-byte length + JSON padded with spaces to 8 bytes) for
/// tensors laid out in the order given.
fn header_bytes(
    specs: &[TensorSpec],
    metadata: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut offset = 0usize;
    let mut infos = Vec::with_capacity(specs.len());
    let mut seen = std::collections::HashSet::with_capacity(specs.len());
    for s in specs {
        if !seen.insert(s.name.as_str()) {
            return Err(LinalgError::InvalidArgument {
                name: "specs",
                reason: format!(
                    "tensor name {:?} appears twice (writing {})",
                    s.name,
                    path.display()
                ),
            });
        }
        let n = s.nbytes();
        infos.push((
            s.name.clone(),
            TensorInfo {
                dtype: s.dtype,
                shape: s.shape.clone(),
                data_offsets: (offset, offset + n),
            },
        ));
        offset += n;
    }
    let meta = Metadata::new(metadata, infos).map_err(|e| corrupt(path, e.to_string()))?;
    let mut json = serde_json::to_vec(&meta).map_err(|e| corrupt(path, e.to_string()))?;
    json.resize(json.len().next_multiple_of(LEN_PREFIX), b' ');
    let mut out = Vec::with_capacity(LEN_PREFIX + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// A streaming, atomic safetensors writer: the header (all names, dtypes and shapes) is written
/// first, then each tensor's data in the same order, one at a time, so only one tensor needs to
/// be in memory. [`finish`](Self::finish) checks that every tensor was written and commits the
/// file atomically; dropping the writer before that leaves no file behind.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use forge_linalg::io::{SafeTensorsFile, SafeTensorsWriter, TensorSpec};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.safetensors");
/// let specs = vec![
///     TensorSpec { name: "a".into(), dtype: DType::F32.into(), shape: vec![2] },
///     TensorSpec { name: "b".into(), dtype: DType::BF16.into(), shape: vec![3] },
/// ];
/// let mut w = SafeTensorsWriter::create(&path, specs, None)?;
/// w.write(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?)?;
/// w.write(&Tensor::ones(3, DType::BF16, &Device::Cpu)?)?;
/// w.finish()?;
/// assert_eq!(SafeTensorsFile::open(&path)?.len(), 2);
/// # Ok::<(), forge_linalg::LinalgError>(())
/// ```
#[derive(Debug)]
pub struct SafeTensorsWriter {
    file: AtomicFile,
    specs: Vec<TensorSpec>,
    next: usize,
}

impl SafeTensorsWriter {
    /// Start writing `path` with tensors `specs` (written in this order) and an optional
    /// `__metadata__` map (PyTorch writes `{"format": "pt"}`).
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] for a duplicate name, [`LinalgError::Io`] naming the path.
    pub fn create(
        path: &Path,
        specs: Vec<TensorSpec>,
        metadata: Option<HashMap<String, String>>,
    ) -> Result<Self> {
        let header = header_bytes(&specs, metadata, path)?;
        let mut file = AtomicFile::create(path)?;
        file.write_all(&header).map_err(|e| io_err(path, e))?;
        Ok(Self {
            file,
            specs,
            next: 0,
        })
    }

    /// The spec of the next tensor to write, or `None` when all are written.
    pub fn next_spec(&self) -> Option<&TensorSpec> {
        self.specs.get(self.next)
    }

    fn expect_next(&self) -> Result<&TensorSpec> {
        self.specs
            .get(self.next)
            .ok_or_else(|| LinalgError::InvalidArgument {
                name: "tensor",
                reason: format!(
                    "all {} tensors of {} are already written",
                    self.specs.len(),
                    self.file.target().display()
                ),
            })
    }

    /// Write the next tensor's data. Its dtype and shape must match the next spec.
    ///
    /// # Errors
    /// [`LinalgError::Shape`] or [`LinalgError::InvalidArgument`] naming the tensor on a mismatch
    /// or when all tensors are written; [`LinalgError::Io`] on a write failure.
    pub fn write(&mut self, t: &Tensor) -> Result<()> {
        let spec = self.expect_next()?;
        if t.dims() != spec.shape.as_slice() {
            return Err(LinalgError::Shape {
                what: format!("tensor {}", spec.name),
                expected: format!("{:?}", spec.shape),
                got: t.dims().to_vec(),
            });
        }
        let dtype: Dtype = t.dtype().into();
        if dtype != spec.dtype {
            return Err(LinalgError::InvalidArgument {
                name: "tensor",
                reason: format!(
                    "tensor {} has dtype {dtype:?}, header says {:?}",
                    spec.name, spec.dtype
                ),
            });
        }
        let path = self.file.target().to_path_buf();
        let file = &mut self.file;
        with_tensor_bytes(t, |b| file.write_all(b))?.map_err(|e| io_err(&path, e))?;
        self.next += 1;
        Ok(())
    }

    /// Write the next tensor's raw little-endian bytes (any dtype, e.g. an `I64` buffer copied
    /// from [`SafeTensorsFile::raw`]).
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] naming the tensor when the byte count does not match its
    /// spec; [`LinalgError::Io`] on a write failure.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let spec = self.expect_next()?;
        if bytes.len() != spec.nbytes() {
            return Err(LinalgError::InvalidArgument {
                name: "bytes",
                reason: format!(
                    "tensor {} needs {} bytes, got {}",
                    spec.name,
                    spec.nbytes(),
                    bytes.len()
                ),
            });
        }
        let path = self.file.target().to_path_buf();
        self.file.write_all(bytes).map_err(|e| io_err(&path, e))?;
        self.next += 1;
        Ok(())
    }

    /// Check that every tensor was written, then commit the file atomically.
    ///
    /// # Errors
    /// [`LinalgError::InvalidArgument`] naming the first unwritten tensor (no file is left
    /// behind); [`LinalgError::Io`] on a write failure.
    pub fn finish(self) -> Result<()> {
        self.into_pending()?.commit()
    }

    /// Check that every tensor was written and return the still-uncommitted file, so that
    /// several files (the shards of one checkpoint) can be committed together once all of them
    /// are complete: dropping the returned [`AtomicFile`] instead removes it.
    ///
    /// # Errors
    /// As [`finish`](Self::finish), without committing.
    pub fn into_pending(self) -> Result<AtomicFile> {
        if let Some(spec) = self.specs.get(self.next) {
            return Err(LinalgError::InvalidArgument {
                name: "tensors",
                reason: format!(
                    "{} of {} tensors written to {}; next is {}",
                    self.next,
                    self.specs.len(),
                    self.file.target().display(),
                    spec.name
                ),
            });
        }
        Ok(self.file)
    }
}

/// Write named tensors to a safetensors file atomically, in the order given, with an optional
/// `__metadata__` map. Streams tensor by tensor (no whole-file buffer).
///
/// # Errors
/// As [`SafeTensorsWriter`].
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let specs = tensors
        .iter()
        .map(|(n, t)| TensorSpec::of(n.clone(), t))
        .collect();
    let mut w = SafeTensorsWriter::create(path, specs, metadata)?;
    for (_, t) in tensors {
        w.write(t)?;
    }
    w.finish()
}

/// `{"format": "pt"}`: the `__metadata__` PyTorch's `safetensors.torch.save_file` writes, which
/// `transformers` checks for when loading.
pub fn pt_metadata() -> HashMap<String, String> {
    [("format".to_string(), "pt".to_string())].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn header_is_padded_and_readable_by_the_reference_parser() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        let t = Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap();
        write_safetensors(&p, &[("abc".into(), t)], Some(pt_metadata())).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("abc").unwrap().shape(), &[3]);
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn failed_closure_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        let r = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(matches!(r, Err(LinalgError::Io { .. })));
        assert!(!p.exists());
        assert!(leftovers(dir.path()).is_empty());
    }
}
