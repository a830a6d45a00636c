//! Slurm job arrays for sharded sweeps: the resources of a task ([`SlurmOptions`], from
//! options or a JSON config file) and the `sbatch` script of a sweep ([`ArrayJob::script`]),
//! one array task per shard.
//!
//! Array task `i` runs shard `i/N` (Slurm's `--array=1-N` indices are the 1-based shard
//! indices of [`crate::shard::ShardSpec`]) with an already-built binary, never through cargo:
//! a task only runs code, it never compiles. Each writes `shard-<i>-of-<N>.json` atomically
//! and logs to `logs/shard-<i>.log` in the sweep folder; submitting, waiting and collecting is
//! the caller's (`cargo xtask demo --executor slurm`).
//!
//! The scheduler-only parts ([`SlurmOptions`], [`sh_quote`], [`array_spec`] and the script
//! writer) live in [`forge_linalg::cluster`], shared with `forge sweep`; this module adds the
//! benchmark's shard files and command line.

use crate::error::{BenchError, Result};
use crate::shard::ShardSpec;
use forge_linalg::cluster::ArrayScript;
use std::path::{Path, PathBuf};

pub use forge_linalg::cluster::{array_spec, log_tail, sh_quote, SlurmOptions};

/// A [`forge_linalg::cluster`] error as forge-bench's: invalid settings stay
/// [`BenchError::InvalidConfig`], anything else is [`BenchError::Linalg`].
pub(crate) fn cluster_err(e: forge_linalg::LinalgError) -> BenchError {
    match e {
        forge_linalg::LinalgError::InvalidConfig { name, reason } => {
            BenchError::InvalidConfig { name, reason }
        }
        other => BenchError::Linalg(other),
    }
}

/// Reads a `--slurm-config` JSON file (missing fields keep their defaults) with forge-bench's
/// error type ([`SlurmOptions::from_file`] returns forge-linalg's).
///
/// # Errors
/// [`BenchError::InvalidConfig`] naming the file or field, [`BenchError::Linalg`] for I/O.
pub fn options_from_file(path: &Path) -> Result<SlurmOptions> {
    SlurmOptions::from_file(path).map_err(cluster_err)
}

/// Refuses whole-machine carbon tracking for array tasks that may share a node: each task
/// would measure the whole machine, and the sum would count the node once per task. Process
/// mode (the default) measures each task's own process and sums without double counting.
///
/// # Errors
/// [`BenchError::InvalidConfig`] for `tracking_mode == "machine"` without `exclusive`.
pub fn check_tracking_mode(tracking_mode: &str, exclusive: bool) -> Result<()> {
    forge_linalg::cluster::check_tracking_mode(tracking_mode, exclusive).map_err(cluster_err)
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
        if self
            .dir
            .to_string_lossy()
            .chars()
            .any(|c| c.is_whitespace() || "'\"\\$`#".contains(c))
        {
            return Err(BenchError::config(
                "sweep folder",
                format!("{:?}: #SBATCH --output cannot hold spaces, quotes or shell syntax; choose another --sweep-dir", self.dir.display().to_string()),
            ));
        }
        let q = |p: &Path| sh_quote(&p.to_string_lossy());
        let args: Vec<String> = self.args.iter().map(|a| sh_quote(a)).collect();
        let command = format!(
            "{} {} --shard \"$i/{}\" --shard-out {}/\"shard-$i-of-{}.json\"",
            q(&self.binary),
            args.join(" "),
            self.count,
            q(&self.dir),
            self.count
        );
        ArrayScript {
            options: self.options.clone(),
            count: self.count,
            indices: self.indices.clone(),
            log_dir: self.dir.join("logs"),
            workdir: self.workdir.clone(),
            env: self.env.clone(),
            command,
        }
        .script()
        .map_err(cluster_err)
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
