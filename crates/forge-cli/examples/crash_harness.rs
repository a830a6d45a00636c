//! Crash-safety harness (issue 16): SIGKILLs each of Forge's writers at random moments and checks
//! what a user would find afterwards.
//!
//! Writers, each driven by a child process that rewrites its artifact in a loop with the
//! library's own writer until it is killed:
//! - `results`: a benchmark results file (`forge_bench::io::write_results`);
//! - `emissions`: forge-carbon's `emissions.csv` + `emissions.jsonl` (`append_record`);
//! - `adapter`: a PEFT adapter folder (`forge_lora::save_adapter`, tiny BERT, rank 2);
//! - `checkpoint`: a model folder (`save_pretrained`, tiny BERT);
//! - `merge`: a TIES merge of three tiny DistilBERT checkpoints (`forge_merge::merge_files`).
//!
//! After every kill the artifact must be the old or a new version, never torn (it is read back
//! with the library's own reader). After the kills, one more clean run of the writer must leave
//! no `.forge-tmp-*` file behind (the next write removes temporary files of dead writers), and
//! the emissions CSV must hold exactly the records of the JSON lines.
//!
//! ```text
//! cargo run --release -p forge-cli --example crash_harness -- --kills 50
//! cargo run --release -p forge-cli --example crash_harness -- --kills 5 --writers adapter,merge
//! ```
//!
//! Prints a Markdown table and exits non-zero on any torn file, stray temporary file or
//! CSV/JSON disagreement.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WRITERS: [&str; 5] = ["results", "emissions", "adapter", "checkpoint", "merge"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_bert() -> PathBuf {
    repo().join("crates/forge-models/tests/fixtures/tiny-bert")
}

/// The artifact of `writer` inside `dir`.
fn artifact(writer: &str, dir: &Path) -> PathBuf {
    match writer {
        "results" => dir.join("results.json"),
        "emissions" => dir.join("emissions.csv"),
        "adapter" => dir.join("adapter"),
        "checkpoint" => dir.join("checkpoint"),
        _ => dir.join("merged"),
    }
}

/// One write of version `i` of `writer`'s artifact.
fn write_once(writer: &str, dir: &Path, i: u64, state: &mut ChildState) -> Result<()> {
    match writer {
        "results" => {
            let r = state.results.as_mut().context("no results template")?;
            r.created_unix_s = 1_700_000_000 + i;
            forge_bench::io::write_results(&artifact(writer, dir), r)?;
        }
        "emissions" => {
            let e = state.emissions.as_mut().context("no emissions record")?;
            e.project_name = format!("crash-{i}");
            e.run_id = format!("00000000-0000-4000-8000-{i:012}");
            forge_carbon::output::append_record(
                &artifact(writer, dir),
                &dir.join(forge_carbon::output::JSON_FILE),
                e,
            )?;
        }
        "adapter" => {
            let files = forge_models::ModelFiles::from_dir(&tiny_bert())?;
            let mut m = forge_models::AnyClassifier::from_files(&files, None, 0, &Device::Cpu)?;
            let cfg = forge_lora::LoraConfig::new(2, 4.0, &["query", "value"]);
            forge_lora::LoraInjector::new(cfg.clone())?
                .with_seed(i)
                .inject(&mut m)?;
            forge_lora::save_adapter(&mut m, &cfg, &artifact(writer, dir))?;
        }
        "checkpoint" => {
            use forge_models::SavePretrained;
            let files = forge_models::ModelFiles::from_dir(&tiny_bert())?;
            let mut m = forge_models::AnyClassifier::from_files(&files, Some(3), i, &Device::Cpu)?;
            m.save_pretrained(&artifact(writer, dir))?;
        }
        _ => {
            let root = repo().join("crates/forge-merge/tests/fixtures");
            let cfg = forge_merge::MergeConfig::from_yaml_file(&root.join("configs/ties.yml"))?;
            forge_merge::merge_files(
                &cfg,
                &root,
                &artifact(writer, dir),
                &forge_merge::WriteOptions::default(),
            )?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct ChildState {
    results: Option<forge_bench::schema::ResultsFile>,
    emissions: Option<forge_carbon::Emissions>,
}

fn child(writer: &str, dir: &Path, once: bool) -> Result<()> {
    let mut state = ChildState::default();
    if writer == "results" {
        state.results = Some(forge_bench::io::read_results(
            &repo().join("results/reference.json"),
        )?);
    }
    if writer == "emissions" {
        let cfg = forge_carbon::CarbonConfig {
            country_iso: "FRA".into(),
            ..Default::default()
        };
        let mut t = forge_carbon::CarbonTracker::new(cfg)?;
        t.start()?;
        state.emissions = Some(t.stop_no_output()?);
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    let mut i = start;
    loop {
        write_once(writer, dir, i, &mut state)?;
        if once {
            return Ok(());
        }
        i += 1;
    }
}

/// Reads the artifact back with the library's reader; `Err` = torn or unreadable.
fn check(writer: &str, dir: &Path) -> Result<()> {
    let path = artifact(writer, dir);
    match writer {
        "results" => {
            forge_bench::io::read_results(&path)?;
        }
        "emissions" => {
            let (csv_rows, json_rows) = emissions_rows(dir)?;
            // A kill between the two appends is repaired by the next append (journal), so the
            // CSV may lag the JSON by the one record in flight, never more, never the other way.
            if !(json_rows == csv_rows || json_rows == csv_rows + 1) {
                bail!("emissions.csv has {csv_rows} records, emissions.jsonl {json_rows}");
            }
        }
        "adapter" => {
            let files = forge_models::ModelFiles::from_dir(&tiny_bert())?;
            let mut m = forge_models::AnyClassifier::from_files(&files, None, 0, &Device::Cpu)?;
            forge_lora::load_adapter(&mut m, &path)?;
        }
        _ => {
            let files = forge_models::ModelFiles::from_dir(&path)?;
            forge_models::AnyClassifier::from_files(&files, None, 0, &Device::Cpu)?;
        }
    }
    Ok(())
}

/// Record counts of the CSV and of the JSON lines, read with forge-carbon's own readers (which
/// skip a torn last line: an append that was killed never committed it).
fn emissions_rows(dir: &Path) -> Result<(usize, usize)> {
    let csv_rows = forge_carbon::output::read_csv(&artifact("emissions", dir))?.len();
    let json_rows =
        forge_carbon::output::read_json(&dir.join(forge_carbon::output::JSON_FILE))?.len();
    Ok((csv_rows, json_rows))
}

/// `.forge-tmp-*` files anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(".forge-tmp-") {
                out.push(p);
            }
        }
    }
    out
}

/// SplitMix64: kill delays reproducible from `--seed`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Row {
    writer: String,
    kills: usize,
    torn: usize,
    temp_seen: usize,
    stray_after: usize,
    csv_json: String,
    first_error: Option<String>,
    seconds: f64,
}

fn run_child(writer: &str, dir: &Path, once: bool) -> Result<std::process::Child> {
    let mut c = Command::new(std::env::current_exe()?);
    c.arg("--child").arg(writer).arg(dir);
    if once {
        c.arg("--once");
    }
    Ok(c.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?)
}

fn harness(
    writer: &str,
    base: &Path,
    kills: usize,
    max_delay_ms: u64,
    rng: &mut Rng,
) -> Result<Row> {
    let t0 = Instant::now();
    let dir = base.join(writer);
    std::fs::create_dir_all(&dir)?;
    let status = run_child(writer, &dir, true)?.wait()?;
    if !status.success() {
        bail!("{writer}: the first clean write failed ({status})");
    }
    check(writer, &dir).with_context(|| format!("{writer}: the first clean write"))?;
    let mut row = Row {
        writer: writer.into(),
        kills: 0,
        torn: 0,
        temp_seen: 0,
        stray_after: 0,
        csv_json: "-".into(),
        first_error: None,
        seconds: 0.0,
    };
    for _ in 0..kills {
        let mut c = run_child(writer, &dir, false)?;
        // the child's start-up (loading a model, a tracker) takes some ms; kill anywhere after it
        let delay = 20 + rng.next() % max_delay_ms;
        std::thread::sleep(Duration::from_millis(delay));
        if let Some(st) = c.try_wait()? {
            bail!("{writer}: the writer loop exited by itself ({st})");
        }
        c.kill()?; // SIGKILL on Unix
        c.wait()?;
        row.kills += 1;
        row.temp_seen += temp_files(&dir).len();
        if let Err(e) = check(writer, &dir) {
            row.torn += 1;
            row.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    let status = run_child(writer, &dir, true)?.wait()?;
    if !status.success() {
        bail!("{writer}: the clean write after the kills failed ({status})");
    }
    if let Err(e) = check(writer, &dir) {
        row.torn += 1;
        row.first_error
            .get_or_insert_with(|| format!("after the clean write: {e:#}"));
    }
    row.stray_after = temp_files(&dir).len();
    if writer == "emissions" {
        let (c, j) = emissions_rows(&dir)?;
        row.csv_json = if c == j {
            format!("{c} = {j}")
        } else {
            format!("{c} != {j}")
        };
        if c != j {
            row.torn += 1;
        }
    }
    row.seconds = t0.elapsed().as_secs_f64();
    Ok(row)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let writer = args.get(1).context("--child WRITER DIR")?;
        let dir = PathBuf::from(args.get(2).context("--child WRITER DIR")?);
        let once = args.iter().any(|a| a == "--once");
        return child(writer, &dir, once);
    }
    let mut kills = 50;
    let mut writers: Vec<String> = WRITERS.iter().map(|s| s.to_string()).collect();
    let mut seed = 0u64;
    let mut max_delay_ms = 150;
    let mut dir: Option<PathBuf> = None;
    let mut it = args.into_iter();
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--kills" => kills = v.parse()?,
            "--writers" => writers = v.split(',').map(str::to_string).collect(),
            "--seed" => seed = v.parse()?,
            "--max-delay-ms" => max_delay_ms = v.parse::<u64>()?.max(1),
            "--dir" => dir = Some(v.into()),
            _ => bail!("unknown argument {k} (--kills N, --writers a,b, --seed S, --max-delay-ms MS, --dir D)"),
        }
    }
    if let Some(w) = writers.iter().find(|w| !WRITERS.contains(&w.as_str())) {
        bail!("unknown writer {w:?} (one of {WRITERS:?})");
    }
    let tmp = tempfile::tempdir()?;
    let base = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let mut rng = Rng(seed);
    println!("| writer | kills | torn / unreadable | temp files seen right after kills | stray temp files after the next run | CSV = JSON | s |");
    println!("|---|---:|---:|---:|---:|---|---:|");
    let mut bad = false;
    for w in &writers {
        let r = harness(w, &base, kills, max_delay_ms, &mut rng)?;
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.writer, r.kills, r.torn, r.temp_seen, r.stray_after, r.csv_json, r.seconds
        );
        if let Some(e) = &r.first_error {
            eprintln!("{}: {e}", r.writer);
        }
        bad |= r.torn > 0 || r.stray_after > 0;
    }
    if bad {
        bail!("crash safety violated (see the table)");
    }
    Ok(())
}
