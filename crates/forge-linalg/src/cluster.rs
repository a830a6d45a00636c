//! The scheduler-only pieces of sharded sweeps, shared by forge-bench (`cargo xtask demo
//! --executor slurm`) and forge-cli (`forge sweep --executor slurm`): the resources of one
//! Slurm array task ([`SlurmOptions`], from options or a JSON config file), shell quoting
//! ([`sh_quote`]), `--array` index lists ([`array_spec`]), the `sbatch` job-array script of a
//! sweep ([`ArrayScript::script`], one task per shard running a caller-given command line) and
//! the contiguous block of work units of one shard ([`shard_range`]).
//!
//! Nothing here knows what a work unit is: callers build the per-task command line.

use crate::error::{LinalgError, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

fn config(name: impl Into<String>, reason: impl Into<String>) -> LinalgError {
    LinalgError::InvalidConfig {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Resources of one array task. Serialised as the JSON config file of `--slurm-config`
/// (every field optional there).
///
/// | field | default | sbatch option |
/// |---|---|---|
/// | `job_name` | `forge-sweep` | `--job-name` |
/// | `cpus_per_task` | 1 | `--cpus-per-task` |
/// | `mem` | `1G` | `--mem` (per node, Slurm units: `512M`, `4G`) |
/// | `time` | `00:30:00` | `--time` |
/// | `partition` | none (the cluster's default) | `--partition` |
/// | `gres` | none | `--gres` (e.g. `gpu:1`) |
/// | `account` | none | `--account` |
/// | `exclusive` | false | `--exclusive` (one task per node) |
/// | `extra` | `[]` | further `#SBATCH` lines, verbatim |
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmOptions {
    /// Job name.
    pub job_name: String,
    /// CPUs per task.
    pub cpus_per_task: u32,
    /// Memory per task (Slurm's `--mem`).
    pub mem: String,
    /// Time limit per task.
    pub time: String,
    /// Partition.
    pub partition: Option<String>,
    /// Generic resources (GPUs), e.g. `gpu:1`.
    pub gres: Option<String>,
    /// Account to charge.
    pub account: Option<String>,
    /// Whether each task gets a node to itself.
    pub exclusive: bool,
    /// Further sbatch options, each written as `#SBATCH <option>`.
    pub extra: Vec<String>,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        Self {
            job_name: "forge-sweep".into(),
            cpus_per_task: 1,
            mem: "1G".into(),
            time: "00:30:00".into(),
            partition: None,
            gres: None,
            account: None,
            exclusive: false,
            extra: Vec::new(),
        }
    }
}

/// Whether `s` is a safe sbatch option value (no spaces, quotes or shell syntax).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:,=+/@%".contains(c))
}

impl SlurmOptions {
    /// Reads a JSON config file (missing fields keep their defaults).
    ///
    /// # Errors
    /// [`LinalgError::Io`] naming the file, [`LinalgError::InvalidConfig`] naming the file and
    /// the bad JSON (unknown fields included), and [`SlurmOptions::validate`]'s.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LinalgError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let o: Self = serde_json::from_str(&text)
            .map_err(|e| config(format!("slurm config {}", path.display()), e.to_string()))?;
        o.validate()?;
        Ok(o)
    }

    /// Checks every field once.
    ///
    /// # Errors
    /// [`LinalgError::InvalidConfig`] naming the field and value: zero CPUs, a memory that is
    /// not `<number>[K|M|G|T]`, a time that is not Slurm's `[D-]HH:MM:SS`, `MM:SS` or minutes,
    /// or a value with spaces or shell syntax.
    pub fn validate(&self) -> Result<()> {
        if self.cpus_per_task == 0 {
            return Err(config("slurm cpus_per_task", "must be at least 1, got 0"));
        }
        let digits = self
            .mem
            .trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(config(
                "slurm mem",
                format!("{:?} is not <number>[K|M|G|T] (e.g. 2G)", self.mem),
            ));
        }
        let time_ok = {
            let (days, rest) = match self.time.split_once('-') {
                Some((d, r)) => (Some(d), r),
                None => (None, self.time.as_str()),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            days.is_none_or(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
                && (1..=3).contains(&parts.len())
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        };
        if !time_ok {
            return Err(config(
                "slurm time",
                format!(
                    "{:?} is not a Slurm time limit (e.g. 00:30:00 or 1-00:00:00)",
                    self.time
                ),
            ));
        }
        for (name, v) in [
            ("job_name", Some(&self.job_name)),
            ("partition", self.partition.as_ref()),
            ("gres", self.gres.as_ref()),
            ("account", self.account.as_ref()),
        ] {
            if let Some(v) = v {
                if !plain(v) {
                    return Err(config(
                        format!("slurm {name}"),
                        format!("{v:?} has characters sbatch options cannot hold"),
                    ));
                }
            }
        }
        if let Some(x) = self
            .extra
            .iter()
            .find(|x| x.contains('\n') || !x.starts_with('-'))
        {
            return Err(config(
                "slurm extra",
                format!("{x:?} is not one sbatch option (e.g. --qos=short)"),
            ));
        }
        Ok(())
    }
}

/// Refuses whole-machine carbon tracking for array tasks that may share a node: each task
/// would measure the whole machine, and the sum would count the node once per task. Process
/// mode (the default) measures each task's own process and sums without double counting.
///
/// # Errors
/// [`LinalgError::InvalidConfig`] for `tracking_mode == "machine"` without `exclusive`.
pub fn check_tracking_mode(tracking_mode: &str, exclusive: bool) -> Result<()> {
    if tracking_mode == "machine" && !exclusive {
        return Err(config(
            "tracking mode",
            "machine-mode carbon tracking with array tasks that may share a node would count \
             the node once per task; use process mode (unset FORGE_TRACKING_MODE) or give each \
             task a node (--exclusive / \"exclusive\": true)",
        ));
    }
    Ok(())
}

/// Quotes `s` for a POSIX shell (single quotes; `'` written as `'\''`).
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A Slurm `--array` index list for `indices`: ranges collapsed (`1-4`, `2,4-6`).
pub fn array_spec(indices: &[usize]) -> String {
    let mut v = indices.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A shard `INDEX/COUNT` (1-based, as Slurm's array indices) parsed and checked; the reason
/// when it is not one, for the caller's error.
///
/// # Errors
/// Why the text is not a shard: no `/`, a part that is not a non-negative integer, a count of
/// 0, or an index outside `1..=count`.
pub fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let (i, n) = s
        .trim()
        .split_once('/')
        .ok_or("expected INDEX/COUNT, e.g. 2/4")?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| "the index is not a non-negative integer")?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| "the count is not a non-negative integer")?;
    if n == 0 {
        return Err("the number of shards must be at least 1".into());
    }
    if i == 0 || i > n {
        return Err(format!(
            "the index must be between 1 and {n} (shards are 1-based), got {i}/{n}"
        ));
    }
    Ok((i, n))
}

/// The last `n` lines of a task's log, indented, or why it cannot be read: what a failed array
/// task is reported with.
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| format!("    | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("    (no log: {e})"),
    }
}

/// The units of shard `index` of `count` (1-based) among `len` units in order: the
/// `index`-th of `count` contiguous blocks, sizes differing by at most one (the first
/// `len % count` blocks are one longer). Over `1..=count` the blocks cover `0..len` exactly
/// once, in order; with more shards than units the last ones are empty.
///
/// # Errors
/// [`LinalgError::InvalidConfig`] unless `1 <= index <= count`.
pub fn shard_range(len: usize, index: usize, count: usize) -> Result<Range<usize>> {
    if count == 0 || index == 0 || index > count {
        return Err(config(
            "shard",
            format!("{index}/{count}: the index must be between 1 and the count (shards are 1-based, the count at least 1)"),
        ));
    }
    let (base, rest) = (len / count, len % count);
    let i = index - 1;
    let start = i * base + i.min(rest);
    let end = start + base + usize::from(i < rest);
    Ok(start..end)
}

/// One sweep as a Slurm job array: array task `i` (in `indices`, `1..=count`) runs `command`
/// with the shell variable `$i` set to its index.
#[derive(Debug, Clone)]
pub struct ArrayScript {
    /// Task resources.
    pub options: SlurmOptions,
    /// Number of shards N.
    pub count: usize,
    /// The shard indices to run (all of `1..=count`, or the missing ones on resume).
    pub indices: Vec<usize>,
    /// Where task `i` logs: `<log_dir>/shard-<i>.log` (stdout and stderr).
    pub log_dir: PathBuf,
    /// Working directory of the tasks.
    pub workdir: PathBuf,
    /// Environment variables exported by the script (e.g. the carbon settings), so every task
    /// measures with the same settings whatever the node's environment.
    pub env: Vec<(String, String)>,
    /// The command line each task `exec`s, already shell-quoted; it may use `"$i"`.
    pub command: String,
}

impl ArrayScript {
    /// Where array task `index` logs.
    pub fn log_path(&self, index: usize) -> PathBuf {
        self.log_dir.join(format!("shard-{index}.log"))
    }

    /// The sbatch script.
    ///
    /// # Errors
    /// [`LinalgError::InvalidConfig`] for invalid options ([`SlurmOptions::validate`]), no
    /// indices, an index outside `1..=count`, a log folder that `#SBATCH --output` cannot
    /// hold, or an environment variable name that is not a shell identifier.
    pub fn script(&self) -> Result<String> {
        self.options.validate()?;
        if self.indices.is_empty() {
            return Err(config("slurm array", "no shards to run"));
        }
        if let Some(i) = self.indices.iter().find(|&&i| i == 0 || i > self.count) {
            return Err(config(
                "slurm array",
                format!("shard index {i} is outside 1..={}", self.count),
            ));
        }
        let logs = self.log_dir.to_string_lossy();
        if logs
            .chars()
            .any(|c| c.is_whitespace() || "'\"\\$`#".contains(c))
        {
            return Err(config(
                "sweep folder",
                format!("{logs:?}: #SBATCH --output cannot hold spaces, quotes or shell syntax; choose another folder"),
            ));
        }
        let o = &self.options;
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!("#SBATCH --job-name={}\n", o.job_name));
        s.push_str(&format!("#SBATCH --array={}\n", array_spec(&self.indices)));
        s.push_str("#SBATCH --ntasks=1\n");
        s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus_per_task));
        s.push_str(&format!("#SBATCH --mem={}\n", o.mem));
        s.push_str(&format!("#SBATCH --time={}\n", o.time));
        // %a = array index (the folder was checked to need no quoting).
        s.push_str(&format!(
            "#SBATCH --output={}\n",
            self.log_dir.join("shard-%a.log").display()
        ));
        for (name, v) in [
            ("partition", &o.partition),
            ("gres", &o.gres),
            ("account", &o.account),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("#SBATCH --{name}={v}\n"));
            }
        }
        if o.exclusive {
            s.push_str("#SBATCH --exclusive\n");
        }
        for x in &o.extra {
            s.push_str(&format!("#SBATCH {x}\n"));
        }
        s.push_str(&format!(
            "# Forge sweep: {} shard(s); array task i runs shard i/{}.\nset -euo pipefail\n",
            self.count, self.count
        ));
        for (k, v) in &self.env {
            if k.is_empty()
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || k.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(config(
                    "slurm environment",
                    format!("{k:?} is not a variable name"),
                ));
            }
            s.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        s.push_str(&format!(
            "cd {}\n",
            sh_quote(&self.workdir.to_string_lossy())
        ));
        s.push_str("i=\"${SLURM_ARRAY_TASK_ID:?not an array task}\"\n");
        s.push_str(&format!(
            "echo \"forge shard $i/{} on $(hostname) at $(date -u +%FT%TZ)\"\n",
            self.count
        ));
        s.push_str(&format!("exec {}\n", self.command));
        Ok(s)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn shard_blocks_cover_every_unit_once_in_order() {
        for len in 0..12 {
            for count in 1..7 {
                let mut all = Vec::new();
                let mut sizes = Vec::new();
                for i in 1..=count {
                    let r = shard_range(len, i, count).unwrap();
                    sizes.push(r.len());
                    all.extend(r);
                }
                assert_eq!(all, (0..len).collect::<Vec<_>>());
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{sizes:?}");
            }
        }
        assert!(shard_range(3, 0, 2).is_err());
        assert!(shard_range(3, 3, 2).is_err());
        assert!(shard_range(3, 1, 0).is_err());
    }

    #[test]
    fn the_script_execs_the_given_command_per_task() {
        let s = ArrayScript {
            options: SlurmOptions::default(),
            count: 3,
            indices: vec![1, 3],
            log_dir: PathBuf::from("/tmp/sw/logs"),
            workdir: PathBuf::from("/work dir"),
            env: vec![],
            command: "/bin/forge sweep f.yml --shard \"$i/3\"".into(),
        }
        .script()
        .unwrap();
        for line in [
            "#SBATCH --array=1,3\n",
            "#SBATCH --output=/tmp/sw/logs/shard-%a.log\n",
            "cd '/work dir'\n",
            "exec /bin/forge sweep f.yml --shard \"$i/3\"\n",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
    }

    #[test]
    fn a_config_file_names_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slurm.json");
        std::fs::write(&p, r#"{"memory": "4G"}"#).unwrap();
        let e = SlurmOptions::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("memory") && e.contains("slurm.json"), "{e}");
    }
}
