//! Save and load a DistilBERT-base-sized classifier (67M parameters) and report the peak
//! resident set of the loading process: the memory-mapped reader copies one tensor at a time
//! and releases its pages, so loading costs about one copy of the model.
//!
//! ```text
//! cargo run -p forge-models --example checkpoint_memory -- save /tmp/distilbert-random
//! cargo run -p forge-models --example checkpoint_memory -- load /tmp/distilbert-random
//! ```
//! (`load` prints the peak RSS from `/proc/self/status`, Linux only; run each in its own process
//! so that the figure is the load's alone.)

use candle_core::Device;
use forge_models::{
    AnyClassifier, DistilBertConfig, DistilBertForSequenceClassification, ModelFiles,
    SavePretrained,
};
use std::path::PathBuf;

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, dir) = match (args.get(1), args.get(2)) {
        (Some(m), Some(d)) => (m.as_str(), PathBuf::from(d)),
        _ => anyhow::bail!("usage: checkpoint_memory save|load DIR"),
    };
    match mode {
        "save" => {
            let cfg = DistilBertConfig::default();
            let mut m = DistilBertForSequenceClassification::new_random(&cfg, 0, &Device::Cpu)?;
            let t = std::time::Instant::now();
            m.save_pretrained(&dir)?;
            println!(
                "saved to {} in {:.2} s",
                dir.display(),
                t.elapsed().as_secs_f64()
            );
        }
        "load" => {
            let t = std::time::Instant::now();
            let m = AnyClassifier::from_files(&ModelFiles::from_dir(&dir)?, None, 0, &Device::Cpu)?;
            let secs = t.elapsed().as_secs_f64();
            let mb =
                std::fs::metadata(dir.join("model.safetensors"))?.len() as f64 / (1 << 20) as f64;
            println!(
                "loaded {} labels from a {mb:.0} MiB checkpoint in {secs:.2} s; peak RSS {:.0} MiB",
                forge_models::SequenceClassifier::num_labels(&m),
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
        other => anyhow::bail!("unknown mode {other:?}: save or load"),
    }
    Ok(())
}
