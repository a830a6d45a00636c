//! Slurm job arrays for sharded sweeps: the resources of a task ([`SlurmOptions`], from
//! options or a JSON config file) and the `sbatch` script of a sweep ([`ArrayJob::script`]),
//! one array task per shard.
//!
//! Array task `i` runs shard `i/N` (Slurm's `--array=1-N` indices are the 1-based shard
//! indices of [`crate::shard::ShardSpec`]) with an already-built binary, never through cargo:
//! a task only runs code, it never compiles. Each writes `shard-<i>-of-<N>.json` atomically
//! and logs to `logs/shard-<i>.log` in the sweep folder; submitting, waiting and collecting is
//! the caller's (`cargo xtask demo --executor slurm`).

use crate::error::{BenchError, Result};
use crate::shard::ShardSpec;
use std::path::{Path, PathBuf};

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
    /// [`BenchError::Io`] / [`BenchError::Json`] naming the file (unknown fields included), and
    /// [`SlurmOptions::validate`]'s.
    pub fn from_file(path: &Path) -> Result<Self> {
        let o: Self = crate::io::read_json(path)?;
        o.validate()?;
        Ok(o)
    }

    /// Checks every field once.
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] naming the field and value: zero CPUs, a memory that is
    /// not `<number>[K|M|G|T]`, a time that is not Slurm's `[D-]HH:MM:SS`, `MM:SS` or minutes,
    /// or a value with spaces or shell syntax.
    pub fn validate(&self) -> Result<()> {
        if self.cpus_per_task == 0 {
            return Err(BenchError::config(
                "slurm cpus_per_task",
                "must be at least 1, got 0",
            ));
        }
        let digits = self
            .mem
            .trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(BenchError::config(
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
            return Err(BenchError::config(
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
                    return Err(BenchError::config(
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
            return Err(BenchError::config(
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
/// [`BenchError::InvalidConfig`] for `tracking_mode == "machine"` without `exclusive`.
pub fn check_tracking_mode(tracking_mode: &str, exclusive: bool) -> Result<()> {
    if tracking_mode == "machine" && !exclusive {
        return Err(BenchError::config(
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

/// One sweep as a Slurm job array.
#[derive(Debug, Clone)]
pub struct ArrayJob {
    /// Task resources.
    pub options: SlurmOptions,
    /// Number of shards N.
    pub count: usize,
    /// The shard indices to run (all of `1..=count`, or the missing ones on resume).
    pub indices: Vec<usize>,
    /// The sweep folder: shard files and `logs/`.
    pub dir: PathBuf,
    /// Working directory of the tasks.
    pub workdir: PathBuf,
    /// The already-built binary every task runs.
    pub binary: PathBuf,
    /// Its arguments before the shard options (e.g. `demo --quick --seeds 2`).
    pub args: Vec<String>,
    /// Environment variables exported by the script (e.g. the carbon settings), so every task
    /// measures with the same settings whatever the node's environment.
    pub env: Vec<(String, String)>,
}

impl ArrayJob {
    /// Where shard `index` writes its results.
    pub fn shard_path(&self, index: usize) -> PathBuf {
        self.dir.join(
            ShardSpec {
                index,
                count: self.count,
            }
            .file_name(),
        )
    }

    /// Where array task `index` logs (stdout and stderr).
    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir.join("logs").join(format!("shard-{index}.log"))
    }

    /// The sbatch script.
    ///
    /// # Errors
    /// [`BenchError::InvalidConfig`] for invalid options ([`SlurmOptions::validate`]), no
    /// indices, an index outside `1..=count`, or an environment variable name that is not a
    /// shell identifier.
    pub fn script(&self) -> Result<String> {
        self.options.validate()?;
        if self.indices.is_empty() {
            return Err(BenchError::config("slurm array", "no shards to run"));
        }
        if let Some(i) = self.indices.iter().find(|&&i| i == 0 || i > self.count) {
            return Err(BenchError::config(
                "slurm array",
                format!("shard index {i} is outside 1..={}", self.count),
            ));
        }
        let dir = self.dir.to_string_lossy();
        if dir
            .chars()
            .any(|c| c.is_whitespace() || "'\"\\$`#".contains(c))
        {
            return Err(BenchError::config(
                "sweep folder",
                format!("{dir:?}: #SBATCH --output cannot hold spaces, quotes or shell syntax; choose another --sweep-dir"),
            ));
        }
        let o = &self.options;
        let q = |p: &Path| sh_quote(&p.to_string_lossy());
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
            self.dir.join("logs").join("shard-%a.log").display()
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
                return Err(BenchError::config(
                    "slurm environment",
                    format!("{k:?} is not a variable name"),
                ));
            }
            s.push_str(&format!("export {k}={}\n", sh_quote(v)));
        }
        s.push_str(&format!("cd {}\n", q(&self.workdir)));
        s.push_str("i=\"${SLURM_ARRAY_TASK_ID:?not an array task}\"\n");
        s.push_str(&format!(
            "echo \"forge shard $i/{} on $(hostname) at $(date -u +%FT%TZ)\"\n",
            self.count
        ));
        let args: Vec<String> = self.args.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&format!(
            "exec {} {} --shard \"$i/{}\" --shard-out {}/\"shard-$i-of-{}.json\"\n",
            q(&self.binary),
            args.join(" "),
            self.count,
            q(&self.dir),
            self.count
        ));
        Ok(s)
    }
}

// Unix paths in the expected scripts (Slurm runs on Unix).
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn job() -> ArrayJob {
        ArrayJob {
            options: SlurmOptions {
                partition: Some("debug".into()),
                gres: Some("gpu:1".into()),
                ..SlurmOptions::default()
            },
            count: 4,
            indices: vec![1, 2, 3, 4],
            dir: PathBuf::from("/tmp/sweep"),
            workdir: PathBuf::from("/repo"),
            binary: PathBuf::from("/repo/target/release/xtask"),
            args: vec![
                "demo".into(),
                "--quick".into(),
                "--scenario".into(),
                "it's".into(),
            ],
            env: vec![("FORGE_PUE".into(), "1.2".into())],
        }
    }

    #[test]
    fn the_script_has_one_task_per_shard_and_runs_the_binary_directly() {
        let s = job().script().unwrap();
        assert!(s.starts_with("#!/bin/bash\n"));
        for line in [
            "#SBATCH --array=1-4",
            "#SBATCH --cpus-per-task=1",
            "#SBATCH --mem=1G",
            "#SBATCH --time=00:30:00",
            "#SBATCH --partition=debug",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --output=/tmp/sweep/logs/shard-%a.log",
            "export FORGE_PUE=1.2",
            "cd /repo",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        assert!(s.contains(
            "exec /repo/target/release/xtask demo --quick --scenario 'it'\\''s' --shard \"$i/4\" --shard-out /tmp/sweep/\"shard-$i-of-4.json\""
        ), "{s}");
        assert!(!s.contains("cargo"), "{s}");
    }

    #[test]
    fn a_resume_runs_only_the_missing_indices() {
        assert_eq!(array_spec(&[4, 2]), "2,4");
        assert_eq!(array_spec(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        let mut j = job();
        j.indices = vec![3];
        assert!(j.script().unwrap().contains("#SBATCH --array=3\n"));
        j.indices = vec![5];
        assert!(j
            .script()
            .unwrap_err()
            .to_string()
            .contains("outside 1..=4"));
    }

    #[test]
    fn machine_mode_needs_a_node_per_task() {
        check_tracking_mode("process", false).unwrap();
        check_tracking_mode("machine", true).unwrap();
        let e = check_tracking_mode("machine", false).unwrap_err();
        assert!(e.to_string().contains("once per task"), "{e}");
    }

    #[test]
    fn bad_options_are_named() {
        for (o, needle) in [
            (
                SlurmOptions {
                    cpus_per_task: 0,
                    ..Default::default()
                },
                "cpus_per_task",
            ),
            (
                SlurmOptions {
                    mem: "lots".into(),
                    ..Default::default()
                },
                "mem",
            ),
            (
                SlurmOptions {
                    time: "1:xx".into(),
                    ..Default::default()
                },
                "time",
            ),
            (
                SlurmOptions {
                    partition: Some("a b".into()),
                    ..Default::default()
                },
                "partition",
            ),
            (
                SlurmOptions {
                    extra: vec!["x\n#SBATCH".into()],
                    ..Default::default()
                },
                "extra",
            ),
        ] {
            let e = o.validate().unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        for t in ["30", "10:00", "00:30:00", "2-00:00:00"] {
            SlurmOptions {
                time: t.into(),
                ..Default::default()
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn a_config_file_sets_some_fields_and_refuses_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slurm.json");
        std::fs::write(&p, r#"{"mem": "4G", "gres": "gpu:2"}"#).unwrap();
        let o = SlurmOptions::from_file(&p).unwrap();
        assert_eq!(
            (o.mem.as_str(), o.gres.as_deref(), o.cpus_per_task),
            ("4G", Some("gpu:2"), 1)
        );
        std::fs::write(&p, r#"{"memory": "4G"}"#).unwrap();
        let e = SlurmOptions::from_file(&p).unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
    }
}
