//! Merge checkpoints on disk from a mergekit YAML file and print what happened to each tensor.
//!
//! ```text
//! cargo run -p forge-merge --example merge_yaml -- [CONFIG.yml] [OUT_DIR]
//! ```
//! Without arguments it runs the TIES fixture (tiny random DistilBERTs in tests/fixtures) into a
//! temporary folder. Model paths in the YAML are relative to the YAML's folder.

use forge_merge::{merge_files, MergeConfig, TensorOutcome, WriteOptions};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut args = std::env::args().skip(1);
    let config_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures.join("configs/ties.yml"));
    let tmp = tempfile::tempdir()?;
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("merged"));
    let config = MergeConfig::from_yaml_file(&config_path)?;
    // The fixture configs name models relative to tests/fixtures (mergekit's working directory).
    let root = if config_path.starts_with(&fixtures) {
        fixtures.clone()
    } else {
        config_path.parent().map(PathBuf::from).unwrap_or_default()
    };
    let t0 = std::time::Instant::now();
    let report = merge_files(&config, &root, &out, &WriteOptions::default())?;
    let (merged, kept, taken, skipped) = report.counts();
    println!(
        "{}: {} tensors -> {} in {:.1} ms (merged {merged}, kept {kept}, taken {taken}, skipped {skipped})",
        config.merge_method,
        report.tensors.len(),
        out.display(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    for t in report.tensors.iter().take(6) {
        let what = match &t.outcome {
            TensorOutcome::Merged => "merged".to_string(),
            TensorOutcome::Kept { from } => format!("kept from {from}"),
            TensorOutcome::Taken { from, reason } => format!("taken from {from} ({reason})"),
            TensorOutcome::Skipped { reason } => format!("skipped ({reason})"),
        };
        println!("  {:<60} {:?} {what}", t.name, t.shape);
    }
    Ok(())
}
