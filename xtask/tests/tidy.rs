//! Repository checks ("tidy", after rust-analyzer's xtask): conventions from STYLE.md and
//! ARCHITECTURE.md that `cargo test` enforces, so a change that breaks them fails CI.

use std::fs;
use std::path::{Path, PathBuf};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn library_crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(project_root().join("crates"))
        .expect("crates/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    v.sort();
    assert!(v.len() >= 8, "expected the forge-* crates, found {v:?}");
    v
}

/// The source of `text` before its first `#[cfg(test)]` (unit tests may print).
fn non_test_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for c in library_crates() {
        rust_files(&c.join("src"), &mut files);
    }
    rust_files(&project_root().join("xtask/src"), &mut files);
    let bad: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(bad.is_empty(), "files without a leading //! doc: {bad:?}");
}

#[test]
fn library_crates_do_not_print_to_stdout() {
    let mut offenders = Vec::new();
    for c in library_crates() {
        let mut files = Vec::new();
        rust_files(&c.join("src"), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            for (i, line) in non_test_part(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("println!(") || code.contains("print!(") {
                    offenders.push(format!("{}:{}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "stdout printing in library code (use tracing): {offenders:?}"
    );
}

#[test]
fn library_crates_deny_missing_docs_and_have_readme_and_example() {
    for c in library_crates() {
        let lib = fs::read_to_string(c.join("src/lib.rs")).expect("lib.rs");
        assert!(
            lib.contains("#![deny(missing_docs)]"),
            "{} lacks #![deny(missing_docs)]",
            c.display()
        );
        assert!(
            c.join("README.md").is_file(),
            "{} has no README.md",
            c.display()
        );
        let examples = fs::read_dir(c.join("examples"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(examples > 0, "{} has no runnable example", c.display());
    }
}

#[test]
fn layering_goes_one_way() {
    // forge-linalg is the bottom layer; nothing below forge-bench depends on forge-bench.
    for c in library_crates() {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        let manifest = fs::read_to_string(c.join("Cargo.toml")).expect("Cargo.toml");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .map(|s| s.split("\n[").next().unwrap_or(""))
            .unwrap_or("");
        if name == "forge-linalg" {
            assert!(
                !deps.contains("forge-"),
                "forge-linalg must not depend on other forge crates"
            );
        }
        if name != "forge-bench" {
            assert!(
                !deps.contains("forge-bench"),
                "{name} must not depend on forge-bench"
            );
        }
    }
}
