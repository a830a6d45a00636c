//! Sweeps through the built binary (issue 17): `demo --executor slurm` with a stand-in for
//! `sbatch` that runs the array tasks of the generated script one after the other (the real
//! Slurm runs in CI: xtask/ci-slurm.sh). A failed task is reported by index with its log, and
//! `--resume` reruns only it; the aggregate equals a single-process run; bad shard
//! specifications are named errors. Unix only: the stand-in is a bash script (Slurm runs on
//! Unix).
#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Output};

/// `sbatch --parsable --wait SCRIPT` for tests: runs each index of the script's `--array` with
/// bash, logging where `--output` says; appends every index run to `$FAKE_SBATCH_RAN`; the
/// index in `$FAKE_SBATCH_FAIL` is "killed" (logs a line, writes no shard).
const FAKE_SBATCH: &str = r#"#!/bin/bash
script="${@: -1}"
spec=$(sed -n 's/^#SBATCH --array=//p' "$script")
out=$(sed -n 's/^#SBATCH --output=//p' "$script")
rc=0
for part in ${spec//,/ }; do
  if [[ $part == *-* ]]; then ids=$(seq "${part%-*}" "${part#*-}"); else ids=$part; fi
  for i in $ids; do
    log=${out//%a/$i}
    echo "$i" >> "$FAKE_SBATCH_RAN"
    if [ "$i" = "${FAKE_SBATCH_FAIL:-}" ]; then echo "slurmstepd: task $i KILLED" > "$log"; rc=1; continue; fi
    SLURM_ARRAY_JOB_ID=42 SLURM_ARRAY_TASK_ID=$i bash "$script" > "$log" 2>&1 || rc=1
  done
done
echo 42
exit $rc
"#;

fn xtask(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(args)
        .env("CI", "true")
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env("FORGE_SBATCH", dir.join("sbatch"))
        .env("FAKE_SBATCH_RAN", dir.join("ran.txt"));
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let sb = dir.path().join("sbatch");
    std::fs::write(&sb, FAKE_SBATCH).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sb, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

const PLAN: [&str; 6] = ["demo", "--quick", "--scenario", "diabetes", "--seeds", "1"];

#[test]
fn a_killed_task_is_reported_and_rerun_alone_by_resume_and_the_aggregate_equals_a_local_run() {
    let dir = setup();
    let d = dir.path();
    let sweep = d.join("sweep");
    let sweep_s = sweep.to_str().unwrap();
    let agg = d.join("agg.json");
    let mut args = PLAN.to_vec();
    args.extend([
        "--executor",
        "slurm",
        "--shards",
        "3",
        "--sweep-dir",
        sweep_s,
    ]);
    args.extend(["--save-json", agg.to_str().unwrap()]);

    // Task 2 is killed: reported by index with its log, the others' shards are kept.
    let o = xtask(d, &args, &[("FAKE_SBATCH_FAIL", "2")]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("array task 2 (shard 2/3) failed"), "{t}");
    assert!(t.contains(&format!("{sweep_s}/logs/shard-2.log")), "{t}");
    assert!(t.contains("KILLED"), "{t}");
    assert!(t.contains("--resume"), "{t}");
    assert!(sweep.join("shard-1-of-3.json").is_file());
    assert!(!sweep.join("shard-2-of-3.json").exists());
    assert!(sweep.join("shard-3-of-3.json").is_file());
    let script = std::fs::read_to_string(sweep.join("forge-sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=1-3"), "{script}");
    assert!(
        !script.contains("cargo "),
        "tasks run the built binary: {script}"
    );

    // --resume runs task 2 only, then aggregates.
    std::fs::remove_file(d.join("ran.txt")).unwrap();
    let mut resume = args.clone();
    resume.push("--resume");
    let o = xtask(d, &resume, &[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(
        std::fs::read_to_string(d.join("ran.txt")).unwrap(),
        "2\n",
        "{t}"
    );
    assert!(t.contains("Transfer vs baseline"), "{t}");
    let r = forge_bench::io::read_results(&agg).unwrap();
    let sw = r.sweep.as_ref().unwrap();
    assert_eq!(sw.shards.len(), 3);
    assert_eq!(sw.shards[1].slurm_job.as_deref(), Some("42_2"));
    assert!(sw.shards.iter().all(|s| s.task.is_some()));

    // The same plan in one process: equal except timing and energy.
    let single = d.join("single.json");
    let mut local = PLAN.to_vec();
    local.extend(["--quiet", "--save-json", single.to_str().unwrap()]);
    let o = xtask(d, &local, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let again = d.join("again.json");
    let o = xtask(
        d,
        &[
            "aggregate",
            sweep_s,
            "-o",
            again.to_str().unwrap(),
            "--check-equal",
            single.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("equal to"), "{}", text(&o));

    // A shard missing from the set is named.
    std::fs::remove_file(sweep.join("shard-3-of-3.json")).unwrap();
    let o = xtask(
        d,
        &["aggregate", sweep_s, "-o", again.to_str().unwrap()],
        &[],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("shard(s) 3/3"), "{}", text(&o));
}

#[test]
fn bad_shard_options_are_named_errors_and_dry_run_prints_the_script() {
    let dir = setup();
    let d = dir.path();
    for (spec, needle) in [
        ("5/4", "between 1 and 4"),
        ("0/2", "1-based"),
        ("two", "INDEX/COUNT"),
    ] {
        let mut args = PLAN.to_vec();
        args.extend(["--shard", spec]);
        let o = xtask(d, &args, &[]);
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(&format!("invalid shard \"{spec}\"")), "{t}");
        assert!(t.contains(needle), "{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    let mut args = PLAN.to_vec();
    args.extend(["--shard", "1/2", "--json"]);
    assert!(text(&xtask(d, &args, &[])).contains("cannot be used with"));
    let mut args = PLAN.to_vec();
    args.push("--resume");
    assert!(text(&xtask(d, &args, &[])).contains("apply to --executor slurm"));
    // diabetes x 1 seed has 10 units.
    let mut args = PLAN.to_vec();
    args.extend(["--executor", "slurm", "--shards", "11", "--dry-run"]);
    let t = text(&xtask(d, &args, &[]));
    assert!(t.contains("at most 10"), "{t}");
    let mut args = PLAN.to_vec();
    args.extend([
        "--executor",
        "slurm",
        "--shards",
        "4",
        "--dry-run",
        "--gres",
        "gpu:1",
    ]);
    args.extend(["--mem", "2G", "--partition", "short"]);
    let o = xtask(d, &args, &[("FORGE_PUE", "1.3")]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for line in [
        "#SBATCH --array=1-4",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mem=2G",
        "#SBATCH --partition=short",
        "export FORGE_PUE=1.3",
        "--shard \"$i/4\"",
    ] {
        assert!(t.contains(line), "{line:?} missing:\n{t}");
    }
    assert!(!d.join("ran.txt").exists(), "--dry-run submitted");
    // Machine-mode tracking on possibly shared nodes is refused.
    let o = xtask(d, &args, &[("FORGE_TRACKING_MODE", "machine")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("once per task"), "{}", text(&o));
}
