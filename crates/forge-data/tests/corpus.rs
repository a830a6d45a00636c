//! Runs the bad-input corpus under `tests/corpus/`: every file listed in `MANIFEST.tsv` must give
//! the listed [`DataError`] variant with a message containing the listed text (usually the file
//! name), never a panic, a success or another error.

use forge_data::*;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Loads `file` the way the manifest says; `Ok(())` means it loaded without an error.
fn load(file: &Path, how: &str) -> Result<()> {
    let mut parts = how.split(':');
    match parts.next().unwrap_or_default() {
        "csv" => {
            let target = parts.next().unwrap_or("y");
            let feats: Vec<&str> = parts
                .next()
                .map(|f| f.split(',').collect())
                .unwrap_or_default();
            load_csv(file, target, &feats).map(|_| ())
        }
        "std" => {
            let ds = load_csv(file, parts.next().unwrap_or("y"), &[])?;
            let split = DomainSplit {
                name: "corpus".into(),
                description: String::new(),
                source: ds.clone(),
                target: ds,
            };
            split.standardized().map(|_| ())
        }
        "diabetes" => {
            let d = tempfile::tempdir()?;
            std::fs::copy(file, d.path().join("diabetes_data_raw.csv.gz"))?;
            diabetes(d.path()).map(|_| ())
        }
        "sst2" => load_sst2_tsv(file).map(|_| ()),
        "under" => load_csv(&file.join(parts.next().unwrap_or("x.csv")), "y", &[]).map(|_| ()),
        other => panic!("unknown loader {other:?} in MANIFEST.tsv"),
    }
}

#[test]
fn every_corpus_case_gives_its_typed_error() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut n = 0;
    let mut failures = Vec::new();
    for line in manifest.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "bad manifest line {line:?}");
        let (name, how, kind, mention) = (f[0], f[1], f[2], f[3]);
        let path = dir.join(name);
        assert!(path.exists(), "corpus file {name} is missing");
        let mention = mention.replace("{file}", name);
        match load(&path, how) {
            Ok(()) => failures.push(format!("{name}: loaded without error, want {kind}")),
            Err(e) => {
                let debug = format!("{e:?}");
                let msg = e.to_string();
                if !debug.starts_with(&format!("{kind} {{"))
                    && !debug.starts_with(&format!("{kind}("))
                {
                    failures.push(format!("{name}: want {kind}, got {debug}"));
                } else if !msg.contains(&mention) {
                    failures.push(format!(
                        "{name}: message {msg:?} does not mention {mention:?}"
                    ));
                }
            }
        }
        n += 1;
    }
    assert!(n >= 25, "only {n} corpus cases");
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every file in the corpus folder is listed in the manifest (no silently skipped case).
#[test]
fn every_corpus_file_is_in_the_manifest() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let listed: Vec<&str> = manifest
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').next())
        .collect();
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == "MANIFEST.tsv" || name == "make_corpus.py" {
            continue;
        }
        assert!(
            listed.contains(&name.as_str()),
            "{name} is not in MANIFEST.tsv"
        );
    }
}
