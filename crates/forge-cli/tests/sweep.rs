//! `forge sweep` through the real binary: named sweep-file errors, deterministic unit order
//! and ids, shards that cover every unit once, a local sweep of the tiny fixture model end to
//! end with `--resume`, and the Slurm executor with a stand-in `sbatch` (Unix: the stand-in is
//! a bash script, as in xtask's sweep tests).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_one_line_error, forge, model_with_tokenizer, stderr, stdout, target_tsv};

/// Writes `body` as the sweep file `dir/name`.
fn sweep_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// The tiny model, its data and a 2 methods x 2 seeds sweep of one epoch on 16 rows.
fn tiny_sweep(dir: &Path) -> PathBuf {
    model_with_tokenizer("tiny-distilbert", dir);
    target_tsv(dir);
    sweep_file(
        dir,
        "sweep.yml",
        "train: target.tsv\nval: target.tsv\nmax_rows: 16\nmax_length: 16\nmodels: [tiny-distilbert]\nmethods: [full, lora-r2]\nseeds: [0, 1]\nepochs: [1]\nbatch_size: [8]\n",
    )
}

fn ids_of_dry_run(file: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let o = forge()
        .arg("sweep")
        .arg(file)
        .arg("--out")
        .arg(out)
        .arg("--dry-run")
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}

#[test]
fn sweep_file_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (body, needles) in [
        (
            "train: t.tsv\nmodels: [m]\nmodles: [x]\n",
            vec!["modles", "sweep.yml"],
        ),
        (
            "train: t.tsv\nmodels: [m]\nseeds: []\n",
            vec!["`seeds` is empty"],
        ),
        ("train: t.tsv\nmodels: []\n", vec!["`models` is empty"]),
        ("train: t.tsv\nmodels: [m]\nlr: []\n", vec!["`lr` is empty"]),
        (
            "train: t.tsv\nmodels: [m]\nmethods: [lora-x]\n",
            vec!["unknown method \"lora-x\"", "methods"],
        ),
        (
            "train: t.tsv\nmodels: [m]\nmethods: [{lora: {r: 4, beta: 1}}]\n",
            vec!["beta"],
        ),
        (
            "train: t.tsv\nmodels: [m]\nmethods: [{dora: {r: 4}}]\n",
            vec!["unknown method \"dora\""],
        ),
        (
            "train: t.tsv\nmodels: [m]\nmethods: [lora-r0]\n",
            vec!["r must be at least 1"],
        ),
        (
            "train: t.tsv\nmodels: [m]\nseeds: [1, 1]\n",
            vec!["`seeds` lists 1 twice"],
        ),
        ("models: [m]\n", vec!["train"]),
    ] {
        let f = sweep_file(d, "sweep.yml", body);
        let o = forge()
            .arg("sweep")
            .arg(&f)
            .args(["--out", "unused", "--dry-run"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(65), "{body}: {}", stderr(&o));
        assert_one_line_error(&o, &needles);
    }
    // JSON too, by extension
    let f = sweep_file(
        d,
        "sweep.json",
        r#"{"train": "t.tsv", "models": ["m"], "sedes": [1]}"#,
    );
    let o = forge()
        .arg("sweep")
        .arg(&f)
        .args(["--out", "unused", "--dry-run"])
        .output()
        .unwrap();
    assert_one_line_error(&o, &["sedes", "sweep.json"]);
    let o = forge()
        .args(["sweep", "missing.yml", "--out", "x"])
        .output()
        .unwrap();
    assert_one_line_error(&o, &["sweep file not found", "missing.yml"]);
}

#[test]
fn units_are_in_a_fixed_order_and_shards_cover_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = sweep_file(
        dir.path(),
        "s.yml",
        "train: t.tsv\nmodels: [a/m1, m2]\nmethods: [full, {lora: {r: 8, alpha: 16}}, lora-r4]\nseeds: [2, 1]\nlr: [1e-4, 5e-5]\n",
    );
    let ids = ids_of_dry_run(&f, dir.path(), &[]);
    assert_eq!(ids.len(), 2 * 3 * 2 * 2);
    assert_eq!(
        &ids[..5],
        [
            "m1-full-lr1e-4-s2",
            "m1-full-lr1e-4-s1",
            "m1-full-lr5e-5-s2",
            "m1-full-lr5e-5-s1",
            "m1-lora-r8-a16-lr1e-4-s2",
        ]
    );
    assert_eq!(ids.last().unwrap(), "m2-lora-r4-lr5e-5-s1");
    assert_eq!(
        ids,
        ids_of_dry_run(&f, dir.path(), &[]),
        "not deterministic"
    );
    for n in [1, 3, 5, 24, 30] {
        let mut all = Vec::new();
        for i in 1..=n {
            all.extend(ids_of_dry_run(
                &f,
                dir.path(),
                &["--shard", &format!("{i}/{n}")],
            ));
        }
        assert_eq!(all, ids, "{n} shards");
    }
    let o = forge()
        .arg("sweep")
        .arg(&f)
        .args(["--out", "x", "--dry-run", "--shard", "4/3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["--shard \"4/3\""]);
}

fn run_sweep(file: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    forge()
        .arg("sweep")
        .arg(file)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_local_sweep_runs_every_unit_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_sweep(dir.path());
    let out = dir.path().join("out");
    let o = run_sweep(&f, &out, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let units = v["units"].as_array().unwrap();
    assert_eq!(units.len(), 4);
    assert_eq!(v["units_total"], 4);
    let ids: Vec<&str> = units
        .iter()
        .map(|u| u["unit"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "tiny-distilbert-full-e1-b8-s0",
            "tiny-distilbert-full-e1-b8-s1",
            "tiny-distilbert-lora-r2-e1-b8-s0",
            "tiny-distilbert-lora-r2-e1-b8-s1",
        ]
    );
    for u in units {
        assert!(u["val_accuracy"].as_f64().is_some(), "{u}");
        assert!(u["energy_kwh"].as_f64().unwrap() > 0.0);
        assert_eq!(u["epochs_run"], 1);
    }
    assert_eq!(units[2]["mode"], "lora");
    let unit = |id: &str| out.join("units").join(id);
    assert!(unit(ids[2]).join("adapter_model.safetensors").is_file());
    assert!(unit(ids[0]).join("model.safetensors").is_file());
    assert!(out.join("sweep.json").is_file());

    // --resume: three skipped, the deleted one rerun
    let before = std::fs::read(unit(ids[0]).join("unit.json")).unwrap();
    std::fs::remove_dir_all(unit(ids[3])).unwrap();
    let o = run_sweep(&f, &out, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.matches("skipped (--resume)").count(), 3, "{e}");
    assert!(e.contains(&format!("{}: running", ids[3])), "{e}");
    assert!(stdout(&o).contains(ids[3]), "table: {}", stdout(&o));
    assert_eq!(
        std::fs::read(unit(ids[0]).join("unit.json")).unwrap(),
        before
    );
    assert!(unit(ids[3]).join("unit.json").is_file());

    // a missing unit is named at aggregation; --allow-partial lists it
    std::fs::remove_file(unit(ids[1]).join("unit.json")).unwrap();
    let o = run_sweep(&f, &out, &["--shard", "2/2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !unit(ids[1]).join("unit.json").exists(),
        "shard 2/2 ran unit 2"
    );
    let o = run_sweep(&f, &out, &["--executor", "slurm", "--resume", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("#SBATCH --array=2\n"), "{}", stdout(&o));
}

#[cfg(unix)]
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

#[cfg(unix)]
#[test]
fn slurm_dry_run_prints_one_task_per_shard_running_this_binary() {
    let dir = tempfile::tempdir().unwrap();
    let f = tiny_sweep(dir.path());
    let out = dir.path().join("out");
    let o = run_sweep(
        &f,
        &out,
        &[
            "--executor",
            "slurm",
            "--dry-run",
            "--mem",
            "2G",
            "--gres",
            "gpu:1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_forge")).unwrap();
    for line in [
        "#SBATCH --array=1-4\n".to_string(),
        "#SBATCH --mem=2G\n".to_string(),
        "#SBATCH --gres=gpu:1\n".to_string(),
        format!("#SBATCH --output={}/logs/shard-%a.log\n", out.display()),
        format!(
            "exec {} --quiet sweep {} --out {} --shard \"$i/4\"\n",
            exe.display(),
            f.display(),
            out.display()
        ),
    ] {
        assert!(s.contains(&line), "missing {line:?} in\n{s}");
    }
    assert!(!out.exists(), "a dry run wrote {}", out.display());
    let o = run_sweep(
        &f,
        &out,
        &[
            "--executor",
            "slurm",
            "--dry-run",
            "--shards",
            "3",
            "--time",
            "soon",
        ],
    );
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["slurm time", "soon"]);
}

#[cfg(unix)]
#[test]
fn slurm_submission_reports_a_failed_task_and_resumes_only_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = tiny_sweep(d);
    let sb = d.join("sbatch");
    std::fs::write(&sb, FAKE_SBATCH).unwrap();
    std::fs::set_permissions(&sb, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = d.join("ran.txt");
    let out = d.join("out");
    let slurm = |fail: &str, extra: &[&str]| {
        forge()
            .env("FORGE_SBATCH", &sb)
            .env("FAKE_SBATCH_RAN", &ran)
            .env("FAKE_SBATCH_FAIL", fail)
            .arg("sweep")
            .arg(&f)
            .arg("--out")
            .arg(&out)
            .args(["--executor", "slurm", "--shards", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = slurm("2", &[]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("array task 2 (shard 2/2) failed"), "{e}");
    assert!(
        e.contains(&format!("{}/logs/shard-2.log", out.display())),
        "{e}"
    );
    assert!(e.contains("KILLED"), "{e}");
    assert!(
        e.lines()
            .last()
            .unwrap()
            .contains("1 of 2 array task(s) failed (2)"),
        "{e}"
    );
    assert!(out.join("forge-sweep.sbatch").is_file());
    let o = slurm("", &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "1\n2\n2\n");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(v["units"].as_array().unwrap().len(), 4);
    assert!(stdout(&o).contains("4 of 4 unit(s)"), "{}", stdout(&o));
}
