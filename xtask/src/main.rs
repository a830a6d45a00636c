//! Forge's task runner: `cargo xtask demo|figures|gate|bench`.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("no tasks yet")
}
