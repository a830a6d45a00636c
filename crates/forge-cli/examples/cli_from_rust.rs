//! Drives the `forge` command line from Rust, exactly as the shell would: gates a red -> white
//! wine transfer on the shipped CSV files, then tracks a short shell command.
//!
//! ```text
//! cargo run -p forge-cli --example cli_from_rust
//! ```

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let red = root.join("datasets/winequality-red.csv");
    let white = root.join("datasets/winequality-white.csv");
    let gate = forge_cli::main_with_args([
        "forge".into(),
        "gate".into(),
        "--source".into(),
        red.into_os_string(),
        "--target".into(),
        white.into_os_string(),
        "--target-col".into(),
        "quality".into(),
        "--max-rows".into(),
        "500".into(),
    ]);
    eprintln!("forge gate exit code: {gate} (0 transfer, 1 caution, 2 block)");

    let out = std::env::temp_dir().join("forge-cli-example-emissions.csv");
    let track = forge_cli::main_with_args([
        "forge",
        "track",
        "--output",
        out.to_str().unwrap_or("emissions.csv"),
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
    ]);
    eprintln!(
        "forge track exit code: {track}; row appended to {}",
        out.display()
    );
}
