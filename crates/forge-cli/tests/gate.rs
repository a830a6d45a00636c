//! End-to-end tests of `forge gate` with the real binary, on the shipped CSV files.

mod common;

use common::{assert_one_line_error, dataset, forge, stderr, stdout};

/// Fast settings: a few hundred rows per side, 100 permutations.
const FAST: [&str; 4] = ["--max-rows", "300", "--permutations", "100"];

#[test]
fn wine_red_to_white_gives_a_verdict_and_its_exit_code() {
    let o = forge()
        .args(["--json", "gate", "--source"])
        .arg(dataset("winequality-red.csv"))
        .arg("--target")
        .arg(dataset("winequality-white.csv"))
        .args(["--target-col", "quality"])
        .args(FAST)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    let code = o.status.code().unwrap();
    let expected = match v["verdict"].as_str().unwrap() {
        "transfer" => 0,
        "transfer-with-caution" => 1,
        "block" => 2,
        other => panic!("unknown verdict {other}"),
    };
    assert_eq!(code, expected, "{}", stderr(&o));
    assert_eq!(v["exit_code"], expected);
    assert_eq!(v["task"], "regression");
    assert_eq!(v["features"].as_array().unwrap().len(), 11);
    let d = &v["decision"];
    assert_eq!(d["n_source"], 300);
    assert_eq!(d["n_features"], 11);
    assert!(!d["reasons"].as_array().unwrap().is_empty());
    assert!(d["validation"].is_object(), "labels were used");
    // red and white wine differ strongly in their chemistry: the shift tests must see it
    assert_eq!(d["shift_detected"], true, "{d}");
    let checks = d["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "mmd_p_value"));
}

#[test]
fn text_output_names_verdict_reasons_and_checks() {
    let o = forge()
        .args(["gate", "--source"])
        .arg(dataset("winequality-red.csv"))
        .arg("--target")
        .arg(dataset("winequality-white.csv"))
        .args([
            "--target-col",
            "quality",
            "--features",
            "alcohol,density,pH",
        ])
        .args(FAST)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(matches!(o.status.code(), Some(0..=2)), "{}", stderr(&o));
    assert!(out.starts_with("verdict: "), "{out}");
    assert!(out.contains("3 features"), "{out}");
    assert!(out.contains("reasons:") && out.contains("checks:"), "{out}");
    assert!(out.contains("validation_p_gain"), "{out}");
    // KS reports columns by index; the text names them
    assert!(out.contains("shifted features, largest first: #"), "{out}");
    assert!(
        out.contains("\"alcohol\"") || out.contains("\"density\"") || out.contains("\"pH\""),
        "{out}"
    );
}

/// Same distribution on both sides (one file split in two), binary target: no shift, and
/// the classification path (logistic transfer, 0/1 mapping of the two values) runs.
#[test]
fn same_distribution_classification_is_not_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dataset("titanic.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let keep = ["Survived", "Pclass", "SibSp", "Parch", "Fare"];
    let h = rdr.headers().unwrap().clone();
    let idx: Vec<usize> = keep
        .iter()
        .map(|k| h.iter().position(|x| x == *k).unwrap())
        .collect();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    let mut wa = csv::Writer::from_path(&a).unwrap();
    let mut wb = csv::Writer::from_path(&b).unwrap();
    wa.write_record(keep).unwrap();
    wb.write_record(keep).unwrap();
    for (i, r) in rdr.records().enumerate() {
        let r = r.unwrap();
        // the two classes are written as 1 and 2, to exercise the 0/1 mapping
        let row: Vec<String> = idx
            .iter()
            .map(|&j| match (j == idx[0], &r[j]) {
                (true, "1") => "2".to_string(),
                (true, _) => "1".to_string(),
                (false, v) => v.to_string(),
            })
            .collect();
        if i % 2 == 0 {
            wa.write_record(&row).unwrap()
        } else {
            wb.write_record(&row).unwrap()
        }
    }
    drop((wa, wb));
    let o = forge()
        .args([
            "--json",
            "gate",
            "--task",
            "classification",
            "--permutations",
            "100",
            "--max-rows",
            "300",
            "--source",
        ])
        .arg(&a)
        .arg("--target")
        .arg(&b)
        .args(["--target-col", "Survived"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["task"], "classification");
    assert_eq!(v["classes"], serde_json::json!([1.0, 2.0]));
    assert_ne!(v["verdict"], "block", "{v}");
    assert_eq!(v["decision"]["severe_shift"], false);
    assert_eq!(o.status.code(), v["exit_code"].as_i64().map(|c| c as i32));
}

#[test]
fn shift_only_uses_no_labels() {
    let o = forge()
        .args(["--json", "gate", "--shift-only", "--source"])
        .arg(dataset("winequality-red.csv"))
        .arg("--target")
        .arg(dataset("winequality-white.csv"))
        .args(["--target-col", "quality"])
        .args(FAST)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert!(v["decision"]["validation"].is_null());
    assert!(
        matches!(o.status.code(), Some(1 | 2)),
        "a shift is detected: {v}"
    );
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_problem() {
    let red = dataset("winequality-red.csv");
    let white = dataset("winequality-white.csv");
    // missing file
    let o = forge()
        .args(["gate", "--source", "nope/missing.csv", "--target"])
        .arg(&white)
        .args(["--target-col", "quality"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["source CSV not found", "nope/missing.csv"]);
    // unknown target column
    let o = forge()
        .args(["gate", "--source"])
        .arg(&red)
        .arg("--target")
        .arg(&white)
        .args(["--target-col", "price"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["\"price\""]);
    // unknown feature column
    let o = forge()
        .args(["gate", "--source"])
        .arg(&red)
        .arg("--target")
        .arg(&white)
        .args(["--target-col", "quality", "--features", "alcohol,colour"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["\"colour\""]);
    // non-numeric column
    let o = forge()
        .args(["gate", "--source"])
        .arg(dataset("titanic.csv"))
        .arg("--target")
        .arg(dataset("titanic.csv"))
        .args(["--target-col", "Survived", "--features", "Pclass,Name"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["\"Name\"", "titanic.csv"]);
    // unknown task (a usage error, not a verdict's exit code)
    let o = forge()
        .args(["gate", "--source"])
        .arg(&red)
        .arg("--target")
        .arg(&white)
        .args(["--target-col", "quality", "--task", "clustering"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["clustering", "regression"]);
    // classification on a non-binary target
    let o = forge()
        .args(["gate", "--task", "classification", "--source"])
        .arg(&red)
        .arg("--target")
        .arg(&white)
        .args(["--target-col", "quality"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
    assert_one_line_error(&o, &["binary", "quality"]);
}

#[test]
fn help_has_an_example_and_completions_are_generated() {
    for cmd in [
        &["track"][..],
        &["gate"],
        &["rank"],
        &["finetune"],
        &["merge"],
        &["completions"],
        &["lora", "inspect"],
        &["lora", "merge"],
        &["lora", "soup"],
    ] {
        let o = forge().args(cmd).arg("--help").output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        assert!(
            stdout(&o).contains("Examples:"),
            "{cmd:?} --help has no example"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let o = forge().args(["completions", shell]).output().unwrap();
        assert_eq!(o.status.code(), Some(0));
        assert!(
            stdout(&o).contains("gate"),
            "{shell} completion lists the commands"
        );
    }
    let o = forge().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["tcsh"]);
}
