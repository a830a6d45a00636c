//! The crash-safety harness (`examples/crash_harness.rs`, issue 16) in a short run: every writer
//! SIGKILLed a few times at random moments; no torn file, no stray temporary file after the next
//! run, emissions CSV = JSON. The acceptance run uses `--kills 50` (see the example's docs).

use std::path::PathBuf;

/// `target/<profile>/examples/crash_harness`, built by `cargo test` with the other examples.
fn harness() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir
        .join("examples")
        .join(format!("crash_harness{}", std::env::consts::EXE_SUFFIX));
    p.is_file().then_some(p)
}

#[cfg(unix)]
#[test]
fn writers_survive_sigkill_without_torn_files_or_stray_temporaries() {
    let Some(h) = harness() else {
        eprintln!("crash_harness example not built (cargo test builds it); skipped");
        return;
    };
    let o = std::process::Command::new(h)
        .args(["--kills", "4", "--seed", "7", "--max-delay-ms", "60"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for w in ["results", "emissions", "adapter", "checkpoint", "merge"] {
        assert!(out.contains(&format!("| {w} | 4 | 0 |")), "{out}");
    }
}
