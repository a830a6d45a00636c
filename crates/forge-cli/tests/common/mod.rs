//! Shared helpers of the end-to-end tests: the real `forge` binary and the repository paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `forge` as built by cargo for this test run.
pub fn forge() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_forge"));
    c.env_remove("RUST_LOG").env("CI", "true");
    for v in [
        "FORGE_PUE",
        "FORGE_CARBON_INTENSITY",
        "FORGE_COUNTRY",
        "FORGE_CPU_TDP_W",
    ] {
        c.env_remove(v);
    }
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the shipped `datasets/`.
pub fn dataset(name: &str) -> PathBuf {
    root().join("datasets").join(name)
}

/// stderr of an output, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout of an output, as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that stderr is exactly one line starting with `error:` and containing every `needle`.
pub fn assert_one_line_error(o: &std::process::Output, needles: &[&str]) {
    let e = stderr(o);
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error {:?} does not name {n:?}",
            lines[0]
        );
    }
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
}
