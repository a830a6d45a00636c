//! Prints every shipped domain split: source/target sizes, features, task and definition.
//!
//! Run: `cargo run -p forge-data --example splits`

fn main() -> anyhow::Result<()> {
    let dir = forge_data::datasets_dir();
    println!("datasets: {}", dir.display());
    println!(
        "{:<20} {:>8} {:>8} {:>9} {:<12}",
        "split", "source", "target", "features", "task"
    );
    for split in forge_data::all_splits(&dir)? {
        println!(
            "{:<20} {:>8} {:>8} {:>9} {:<12}",
            split.name,
            split.source.n_samples(),
            split.target.n_samples(),
            split.source.n_features(),
            split.source.task.to_string(),
        );
    }
    println!();
    for split in forge_data::all_splits(&dir)? {
        println!("- {}", split.description);
    }
    Ok(())
}
