//! An optional Intel oneMKL backend for the f32 products of [`crate::sgemm`], loaded at run
//! time from a `libmkl_rt` the user already has (`pip install mkl` puts one in
//! `<prefix>/lib/libmkl_rt.so.3`; Debian's `libmkl-rt` in `/usr/lib/x86_64-linux-gnu/`).
//!
//! Forge's own f32 GEMM is the pure-Rust `gemm` crate. PyTorch's CPU build multiplies with
//! MKL, and at the shapes of a transformer layer on this project's 2-core machines MKL's
//! single-threaded `sgemm` runs ~1.3x faster than the `gemm` crate's (docs/speed.md,
//! "The GEMM backend"). Nothing is linked at build time and no MKL is shipped: the library is
//! opened with `dlopen` only when asked for, by setting `FORGE_MKL` to its path before the
//! first product (or by calling [`load`]). Its threading layer is set to sequential, because
//! [`crate::sgemm`] already shares the rows out over rayon's threads; two thread pools would
//! compete for the same cores.
//!
//! Without `FORGE_MKL` nothing changes. When `FORGE_MKL` names a file that cannot be opened,
//! or that lacks `cblas_sgemm`, the products stay on the `gemm` crate and one warning names
//! the problem ([`status`] keeps it). Linux only (elsewhere [`load`] returns an error).
//!
//! The products are BLAS's `sgemm` (Dongarra et al. 1990, "A set of level 3 basic linear
//! algebra subprograms", ACM TOMS 16(1)), called through the CBLAS row-major interface.

use crate::{LinalgError, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable naming the `libmkl_rt` to load.
pub const ENV: &str = "FORGE_MKL";

/// A loaded MKL: its version string and the entry point the products use.
#[derive(Debug)]
pub struct Mkl {
    path: PathBuf,
    version: String,
    #[cfg(target_os = "linux")]
    sgemm: CblasSgemm,
}

#[cfg(target_os = "linux")]
type CblasSgemm = unsafe extern "C" fn(
    layout: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);

impl Mkl {
    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// MKL's own version string (`MKL_Get_Version_String`), e.g. "Intel(R) oneAPI Math
    /// Kernel Library Version 2026.2.1 ...".
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// What [`active`] found: the backend in use, or why `FORGE_MKL` was not honoured.
#[derive(Debug)]
pub enum Status {
    /// `FORGE_MKL` is not set (or empty) and [`load`] was not called: the `gemm` crate.
    NotRequested,
    /// MKL is loaded and the f32 products use it.
    Loaded(Mkl),
    /// `FORGE_MKL` was set but loading failed (the message); the `gemm` crate is used.
    Failed(String),
}

static STATE: OnceLock<Status> = OnceLock::new();

/// The backend state, initialised from `FORGE_MKL` on first use.
pub fn status() -> &'static Status {
    STATE.get_or_init(|| match std::env::var_os(ENV) {
        Some(p) if !p.is_empty() => match open(Path::new(&p)) {
            Ok(m) => {
                tracing::info!(path = %m.path.display(), version = %m.version, "f32 GEMM: MKL");
                Status::Loaded(m)
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!("{ENV}: {msg}; the f32 products stay on the gemm crate");
                Status::Failed(msg)
            }
        },
        _ => Status::NotRequested,
    })
}

/// The loaded MKL, if any (see the module docs).
pub fn active() -> Option<&'static Mkl> {
    match status() {
        Status::Loaded(m) => Some(m),
        _ => None,
    }
}

/// Loads MKL from `path` for every later f32 product of this process.
///
/// # Errors
/// [`LinalgError::InvalidArgument`] when the library cannot be opened or lacks `cblas_sgemm`
/// (the message names the file and the reason), when another backend state was already fixed
/// (by an earlier product or call; a different path is refused), or off Linux.
pub fn load(path: &Path) -> Result<&'static Mkl> {
    let mut err = None;
    let state = STATE.get_or_init(|| match open(path) {
        Ok(m) => Status::Loaded(m),
        Err(e) => {
            let msg = e.to_string();
            err = Some(e);
            Status::Failed(msg)
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    match state {
        Status::Loaded(m) if m.path == path => Ok(m),
        other => Err(LinalgError::InvalidArgument {
            name: "MKL library",
            reason: format!(
                "the f32 GEMM backend of this process is already fixed ({}); load MKL before \
                 the first product, once",
                describe(other)
            ),
        }),
    }
}

/// One line for reports: "MKL <version>" or "gemm crate" (with the reason MKL was not used).
pub fn describe(s: &Status) -> String {
    match s {
        Status::NotRequested => "gemm crate".into(),
        Status::Loaded(m) => format!("MKL ({})", m.version),
        Status::Failed(e) => format!("gemm crate ({ENV} not used: {e})"),
    }
}

#[cfg(not(target_os = "linux"))]
fn open(path: &Path) -> Result<Mkl> {
    Err(LinalgError::InvalidArgument {
        name: "MKL library",
        reason: format!(
            "{}: the MKL backend is loaded with dlopen and is Linux-only",
            path.display()
        ),
    })
}

#[cfg(target_os = "linux")]
fn open(path: &Path) -> Result<Mkl> {
    use std::ffi::{CStr, CString};
    let bad = |reason: String| LinalgError::InvalidArgument {
        name: "MKL library",
        reason: format!("{}: {reason}", path.display()),
    };
    if !path.is_file() {
        return Err(bad(
            "no such file (FORGE_MKL must name libmkl_rt.so*)".into()
        ));
    }
    // libmkl_rt opens its siblings on the first product and exits the whole process when one
    // is missing ("Intel oneMKL FATAL ERROR: Cannot load ..."): check for them first.
    let dir = path.parent().unwrap_or(Path::new("."));
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot list its folder: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&str> = SIBLINGS
        .iter()
        .copied()
        .filter(|s| !names.iter().any(|n| n.starts_with(&format!("{s}.so"))))
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "{} must lie beside it (MKL loads them at run time and exits the process when one \
             is missing): keep the MKL package's lib folder whole",
            missing.join(", ")
        )));
    }
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| bad("the path holds a NUL byte".into()))?;
    let dl_error = || {
        // SAFETY: dlerror returns NULL or a NUL-terminated message owned by libc.
        let e = unsafe { libc::dlerror() };
        if e.is_null() {
            "unknown dlopen error".to_string()
        } else {
            // SAFETY: non-null, NUL-terminated (above).
            unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: dlopen with a valid C string; the handle is never closed (the library stays
    // loaded for the life of the process, as the function pointers taken from it require).
    let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(bad(format!("dlopen failed: {}", dl_error())));
    }
    let sym = |name: &CStr| {
        // SAFETY: a valid handle and C string.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let sgemm = sym(c"cblas_sgemm")
        .ok_or_else(|| bad("no cblas_sgemm symbol: not an MKL runtime library".into()))?;
    // Sequential threading (MKL_THREADING_SEQUENTIAL = 1) and the 32-bit integer interface
    // (MKL_INTERFACE_LP64 = 0), before the first computational call.
    if let Some(p) = sym(c"MKL_Set_Threading_Layer") {
        // SAFETY: `int MKL_Set_Threading_Layer(int)` in mkl_rt.
        let f: unsafe extern "C" fn(i32) -> i32 = unsafe { std::mem::transmute(p) };
        // SAFETY: a plain call with a valid enum value.
        unsafe { f(1) };
    } else {
        return Err(bad(
            "no MKL_Set_Threading_Layer symbol: load the single dynamic library libmkl_rt".into(),
        ));
    }
    if let Some(p) = sym(c"MKL_Set_Interface_Layer") {
        // SAFETY: `int MKL_Set_Interface_Layer(int)` in mkl_rt.
        let f: unsafe extern "C" fn(i32) -> i32 = unsafe { std::mem::transmute(p) };
        // SAFETY: a plain call with a valid enum value.
        unsafe { f(0) };
    }
    let version = match sym(c"MKL_Get_Version_String") {
        Some(p) => {
            // SAFETY: `void MKL_Get_Version_String(char *buf, int len)` in mkl_rt.
            let f: unsafe extern "C" fn(*mut libc::c_char, i32) = unsafe { std::mem::transmute(p) };
            let mut buf = vec![0 as libc::c_char; 256];
            // SAFETY: buf holds 256 bytes; MKL writes a NUL-terminated string of at most len.
            unsafe { f(buf.as_mut_ptr(), buf.len() as i32 - 1) };
            // SAFETY: the last byte stays 0, so the string is terminated.
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .trim()
                .to_string()
        }
        None => "unknown version".into(),
    };
    // SAFETY: the symbol is CBLAS's `cblas_sgemm`, whose C signature CblasSgemm spells out.
    let sgemm: CblasSgemm = unsafe { std::mem::transmute(sgemm) };
    let m = Mkl {
        path: path.to_path_buf(),
        version,
        sgemm,
    };
    check_product(&m).map_err(bad)?;
    Ok(m)
}

/// The libraries `libmkl_rt` loads for a sequential LP64 `sgemm` (the CPU-specific kernel
/// library, e.g. `libmkl_avx512`, comes from the same folder).
#[cfg(target_os = "linux")]
const SIBLINGS: [&str; 3] = ["libmkl_core", "libmkl_intel_lp64", "libmkl_sequential"];

/// One small product checked against a hand-computed value before the library is trusted.
#[cfg(target_os = "linux")]
fn check_product(m: &Mkl) -> std::result::Result<(), String> {
    let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
    let b = [7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0]; // 3 x 2
    let mut c = [0.5f32; 4];
    // SAFETY: row-major 2x3 times 3x2 into 2x2, leading dimensions 3, 2, 2.
    unsafe {
        m.gemm(
            2,
            2,
            3,
            a.as_ptr(),
            3,
            false,
            b.as_ptr(),
            2,
            false,
            1.0,
            c.as_mut_ptr(),
        )
    };
    let want = [58.5f32, 64.5, 139.5, 154.5];
    if c == want {
        Ok(())
    } else {
        Err(format!(
            "its sgemm gave {c:?} for a product whose value is {want:?}"
        ))
    }
}

impl Mkl {
    /// `C = A B + beta C`, row major, `C` `m x n` with row stride `n`; `A` is `m x k` with
    /// leading dimension `lda` (stored `k x m` when `ta`), `B` is `k x n` with `ldb` (stored
    /// `n x k` when `tb`).
    ///
    /// # Safety
    /// The pointers must address matrices of those shapes and leading dimensions; with
    /// `beta == 0` `C` may be uninitialised (BLAS does not read it), otherwise it must be
    /// initialised. Every dimension must fit in an `i32`.
    #[allow(clippy::too_many_arguments)]
    #[cfg(target_os = "linux")]
    pub(crate) unsafe fn gemm(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        ta: bool,
        b: *const f32,
        ldb: usize,
        tb: bool,
        beta: f32,
        c: *mut f32,
    ) {
        // SAFETY: the same contract, with C's leading dimension n and alpha 1.
        unsafe { self.gemm_ld(m, n, k, 1.0, (a, lda, ta), (b, ldb, tb), beta, (c, n)) }
    }

    /// [`Mkl::gemm`] with `alpha` and `C`'s row stride `ldc` (`>= n`): `C = alpha A B + beta C`.
    ///
    /// # Safety
    /// As [`Mkl::gemm`], for a `C` with row stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    #[cfg(target_os = "linux")]
    pub(crate) unsafe fn gemm_ld(
        &self,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        (a, lda, ta): (*const f32, usize, bool),
        (b, ldb, tb): (*const f32, usize, bool),
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        const ROW_MAJOR: i32 = 101;
        let t = |x: bool| if x { 112 } else { 111 };
        // SAFETY: the caller's contract above is cblas_sgemm's.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                t(ta),
                t(tb),
                m as i32,
                n as i32,
                k as i32,
                alpha,
                a,
                lda as i32,
                b,
                ldb as i32,
                beta,
                c,
                ldc as i32,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clear_error() {
        let e = open(Path::new("/nonexistent/libmkl_rt.so.2")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/libmkl_rt.so.2"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_library_without_cblas_is_refused() {
        // libc is loaded in every process and has no cblas_sgemm
        let libc_path = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file());
        if let Some(p) = libc_path {
            let dir = tempfile::tempdir().unwrap();
            let rt = dir.path().join("libmkl_rt.so.3");
            std::os::unix::fs::symlink(p, &rt).unwrap();
            for s in SIBLINGS {
                std::fs::write(dir.path().join(format!("{s}.so.3")), b"").unwrap();
            }
            let e = open(&rt).unwrap_err();
            assert!(e.to_string().contains("cblas_sgemm"), "{e}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_runtime_without_its_siblings_is_refused_before_mkl_can_exit() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("libmkl_rt.so.3");
        std::fs::write(&rt, b"not a library").unwrap();
        std::fs::write(dir.path().join("libmkl_core.so.3"), b"").unwrap();
        let e = open(&rt).unwrap_err().to_string();
        assert!(e.contains("libmkl_intel_lp64, libmkl_sequential"), "{e}");
        // with the siblings present the next check (dlopen) speaks
        for s in ["libmkl_intel_lp64.so.3", "libmkl_sequential.so.3"] {
            std::fs::write(dir.path().join(s), b"").unwrap();
        }
        let e = open(&rt).unwrap_err().to_string();
        assert!(e.contains("dlopen failed"), "{e}");
    }

    #[test]
    fn the_env_variable_decides_and_reports() {
        // Whatever this process was started with, status() and active() agree and describe()
        // says which backend the products use.
        let s = status();
        assert_eq!(active().is_some(), matches!(s, Status::Loaded(_)));
        let d = describe(s);
        match s {
            Status::Loaded(m) => {
                assert!(d.starts_with("MKL"), "{d}");
                assert!(m.version().contains("Math Kernel"), "{}", m.version());
            }
            _ => assert!(d.starts_with("gemm crate"), "{d}"),
        }
        if std::env::var_os(ENV).is_some_and(|p| !p.is_empty()) {
            assert!(
                active().is_some(),
                "{ENV} is set but MKL was not loaded: {d}"
            );
        }
    }
}
