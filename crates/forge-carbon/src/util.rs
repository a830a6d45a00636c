//! Small helpers: UTC timestamps, run ids, OS string, atomic file writes, file locks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CarbonError, Result};

/// Formats a time as UTC `YYYY-MM-DDTHH:MM:SS` (CodeCarbon's timestamp format).
///
/// Civil-from-days conversion after H. Hinnant, "chrono-Compatible Low-Level Date Algorithms".
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// A random UUID version 4 as text (the format of CodeCarbon's `run_id`), from the `uuid` crate.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `<sysname>-<release>-<machine>` from uname(2) on Unix (e.g. `Linux-5.15.0-x86_64`, close to
/// Python's `platform.platform()` that CodeCarbon records); `<os>-<arch>` elsewhere.
pub fn os_string() -> String {
    #[cfg(unix)]
    {
        // SAFETY: an all-zero utsname is a valid value of this plain C struct.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable utsname; uname only writes into it.
        if unsafe { libc::uname(&mut u) } == 0 {
            let field = |f: &[libc::c_char]| -> String {
                let bytes: Vec<u8> = f
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as u8)
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            return format!(
                "{}-{}-{}",
                field(&u.sysname),
                field(&u.release),
                field(&u.machine)
            );
        }
    }
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Prefix of every temporary file Forge creates next to a target file (as `forge_linalg::io`).
pub const TMP_PREFIX: &str = ".forge-tmp-";

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."))
}

/// Writes `bytes` to `path` atomically, the same way as `forge_linalg::io::write_atomic`: a
/// `tempfile::NamedTempFile` in the target folder (prefix [`TMP_PREFIX`]), fsync, persist
/// (rename over the target), fsync of the folder. A crash leaves the old or the new file, never
/// a torn one. (forge-carbon cannot depend on forge-linalg, which pulls candle.)
///
/// # Errors
/// [`CarbonError::Io`] on any file-system failure (the temporary file is removed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&own_tmp_prefix())
        .tempfile_in(dir)
        .map_err(|e| CarbonError::io(dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| CarbonError::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CarbonError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| CarbonError::io(path, e.error))?;
    sync_dir(dir);
    Ok(())
}

/// fsyncs a directory so that a rename or a new file in it is durable (Unix; a no-op elsewhere,
/// where directories cannot be opened as files).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// This machine as 8 hex digits (FNV-1a of the host name), as in `forge_linalg::io`'s temporary
/// names, so that both crates recognise each other's files.
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let h = host.trim().bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        format!("{h:08x}")
    })
}

/// `.forge-tmp-<host>-<pid>-`: the prefix of this process's temporary files.
fn own_tmp_prefix() -> String {
    format!("{TMP_PREFIX}{}-{}-", host_tag(), std::process::id())
}

/// The writer of a temporary file named `.forge-tmp-<host>-<pid>-*` when `<host>` is this
/// machine and `<pid>` no longer exists there (Linux: `/proc`); such a file is stale at once.
fn dead_local_writer(name: &str, host: &str) -> bool {
    let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    match (
        parts.next(),
        parts.next().map(str::parse::<u32>),
        parts.next(),
    ) {
        (Some(h), Some(Ok(pid)), Some(_)) if h == host => {
            pid != std::process::id()
                && cfg!(target_os = "linux")
                && Path::new("/proc/self").exists()
                && !Path::new("/proc").join(pid.to_string()).exists()
        }
        _ => false,
    }
}

/// Removes Forge's own temporary files (prefix [`TMP_PREFIX`]) from `dir`: leftovers of a writer
/// killed between creating and persisting its temporary file. A file of a writer process of
/// this machine that no longer exists goes at once; any other `.forge-tmp-*` file (older
/// naming, another machine sharing the folder) once it is older than `min_age`.
/// Returns how many were removed. Files of other programs are never touched.
pub fn clean_stale_temp_files(dir: &Path, min_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let host = host_tag();
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let old = dead_local_writer(&name.to_string_lossy(), host)
            || e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= min_age);
        if old && e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(file = %e.path().display(), "removed a stale temporary file");
            n += 1;
        }
    }
    n
}

/// An exclusive advisory lock on `<path>.lock` (std's `File::lock`: flock on Unix, LockFileEx on
/// Windows), released on drop. Serialises the appends of concurrent writers (e.g. parallel
/// benchmark processes).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CarbonError::io(&lock_path, e))?;
        file.lock().map_err(|e| CarbonError::io(&lock_path, e))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_known_dates() {
        let t = |s: u64| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(t(0), "1970-01-01T00:00:00");
        // `date -u -d @1709857547 +%FT%T`
        assert_eq!(t(1_709_857_547), "2024-03-08T00:25:47");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }

    #[test]
    fn temp_files_of_dead_local_writers_are_stale_at_once() {
        let d = tempfile::tempdir().unwrap();
        let host = host_tag();
        let dead = format!("{TMP_PREFIX}{host}-4294967294-x");
        let alive = format!("{TMP_PREFIX}{host}-1-x");
        let foreign = format!("{TMP_PREFIX}00000000-4294967294-x");
        for n in [&dead, &alive, &foreign] {
            std::fs::write(d.path().join(n), "torn").unwrap();
        }
        assert_eq!(
            clean_stale_temp_files(d.path(), Duration::from_secs(3600)),
            1
        );
        assert!(!d.path().join(&dead).exists());
        assert!(d.path().join(&alive).exists() && d.path().join(&foreign).exists());
        // our own temporary names carry this machine and this process
        assert!(
            own_tmp_prefix().starts_with(&format!("{TMP_PREFIX}{host}-{}-", std::process::id()))
        );
    }

    #[test]
    fn atomic_write_and_stale_temp_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        std::fs::write(d.path().join(".forge-tmp-dead"), "torn").unwrap();
        std::fs::write(d.path().join(".other-tmp"), "not ours").unwrap();
        assert_eq!(
            clean_stale_temp_files(d.path(), Duration::from_secs(3600)),
            0
        );
        assert_eq!(clean_stale_temp_files(d.path(), Duration::ZERO), 1);
        assert!(d.path().join(".other-tmp").exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
