//! Forge's task runner: `cargo xtask demo|story|figures|gate|readme|bench`.
//!
//! Thin by design: argument parsing, progress bars and printing; everything else lives in
//! forge-bench. `cargo xtask` is an alias for `cargo run --package xtask --release --`.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use forge_bench::report;
use forge_bench::scenario::Mode;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod story;

/// `println!` that ends the process quietly when stdout is closed (`cargo xtask tables | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }};
}

mod speed;
mod sweep;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Forge's demos, figures and regression gates"
)]
struct Cli {
    /// More detail: -v prints every column and per-seed gate statistics and shows info logs;
    /// -vv debug logs. RUST_LOG overrides the log filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark scenarios and print the CO2 tables.
    Demo(Box<DemoArgs>),
    /// A short narrative walk-through of one real domain shift.
    Story(StoryArgs),
    /// Print the tables of a results file.
    Tables {
        /// Results JSON (default: the last demo run).
        #[arg(long)]
        results: Option<PathBuf>,
    },
    /// Draw the 300-DPI figures from a results file.
    Figures {
        /// Results JSON (default: the last demo run).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "figures")]
        out: PathBuf,
    },
    /// Check a results file against the committed thresholds; exit 1 on a regression.
    Gate {
        /// Results JSON (default: the last demo run).
        #[arg(long)]
        results: Option<PathBuf>,
        /// Thresholds JSON.
        #[arg(long, default_value = "xtask/gates.json")]
        thresholds: PathBuf,
        /// Print thresholds proposed from the results instead of checking.
        #[arg(long)]
        propose: bool,
    },
    /// Regenerate the README's demo-results section from a results file.
    Readme {
        /// Results JSON.
        #[arg(long, default_value = "results/reference.json")]
        results: PathBuf,
        /// The command that produced the results (quoted in the README).
        #[arg(
            long,
            default_value = "cargo xtask demo --save-json results/reference.json"
        )]
        command: String,
        /// Which generated section to replace: `demo` (between `<!-- BEGIN DEMO RESULTS -->`
        /// and its END marker) or another name with its own markers (e.g. `transformer`).
        #[arg(long, default_value = "demo")]
        section: String,
    },
    /// Merge results shards (`demo --shard i/N`) into one results file; refuses shards of
    /// different code versions, modes, seeds or carbon settings, and missing or duplicated
    /// work units, naming them.
    Aggregate(sweep::AggregateArgs),
    /// Time Forge's forward, LoRA step, full step, Fisher batch and merge at DistilBERT-base and
    /// MiniLM dimensions; with --python, side by side with PyTorch (ratios, peak RSS, CPU use).
    /// `--criterion -- ARGS` runs the criterion benchmarks instead.
    Bench(Box<speed::BenchArgs>),
}

#[derive(Args)]
struct DemoArgs {
    /// Small data, 2 seeds: tables within a minute.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Full data sizes, 10 seeds.
    #[arg(long)]
    full: bool,
    /// Number of seeds (0..N).
    #[arg(long)]
    seeds: Option<usize>,
    /// Run only this scenario (repeatable; `--list` prints the names).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Also write the results JSON here (atomically).
    #[arg(long)]
    save_json: Option<PathBuf>,
    /// Print the results JSON to stdout instead of the tables.
    #[arg(long)]
    json: bool,
    /// No progress bars; tables only.
    #[arg(long)]
    quiet: bool,
    /// Folder with the tabular CSVs.
    #[arg(long, env = "FORGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Transformer model: a local folder or a Hugging Face Hub id (looked up in the Hugging
    /// Face cache, then downloaded). Default: distilbert-base-uncased.
    #[arg(long, env = "FORGE_MODEL")]
    model: Option<String>,
    /// Folder with the text data sets (sst2/, ag_news/).
    #[arg(long, env = "FORGE_TEXT_DATA_DIR")]
    text_data_dir: Option<PathBuf>,
    /// Print the scenario names (with -v, their strategies), then exit.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    sweep: sweep::SweepArgs,
}

#[derive(Args)]
struct StoryArgs {
    /// Which story: `ml` (a tabular domain shift) or `dl` (a pretrained encoder on SST-2 and AG
    /// News; needs --model and --text-data-dir).
    #[arg(default_value = "ml")]
    which: String,
    /// The regression shift to tell the `ml` story on (diabetes, wine or housing).
    #[arg(long, default_value = "diabetes")]
    scenario: String,
    /// Also show the gate refusing a harmful source (`ml`: the label-permuted source; `dl`: a
    /// random-init encoder, trained anyway to show what it would have cost).
    #[arg(long)]
    include_bad_source: bool,
    /// `dl`: the seed's sizes (600 SST-2 sentences, 3 epochs) instead of the smoke size (200
    /// sentences, 1 epoch; about two minutes on 2 cores).
    #[arg(long)]
    standard: bool,
    /// `dl`: transformer model, a local folder or a Hugging Face Hub id.
    #[arg(long, env = "FORGE_MODEL")]
    model: Option<String>,
    /// `dl`: folder with the text data sets (sst2/, ag_news/).
    #[arg(long, env = "FORGE_TEXT_DATA_DIR")]
    text_data_dir: Option<PathBuf>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder with the tabular CSVs.
    #[arg(long, env = "FORGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where `demo` always saves its last results (under the target dir, ignored by git).
pub(crate) fn last_results_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    target.join("forge-results").join("latest.json")
}

pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Sends library `tracing` events (no RAPL, NVML failed, ...) to stderr: warnings by default,
/// info with -v, debug with -vv; `RUST_LOG` overrides.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    std::env::set_current_dir(project_root()).context("cd to the project root")?;
    let verbose = cli.verbose > 0;
    match cli.cmd {
        Cmd::Demo(a) => demo(*a, verbose),
        Cmd::Story(a) if a.which == "dl" => story::run_dl(
            a.seed,
            a.include_bad_source,
            a.standard,
            a.model,
            a.text_data_dir,
        ),
        Cmd::Story(a) => story::run(
            &a.which,
            &a.scenario,
            a.seed,
            a.include_bad_source,
            a.data_dir,
        ),
        Cmd::Figures { results, out } => figures(results, &out),
        Cmd::Tables { results } => {
            let (_, r) = load(results)?;
            print_tables(&r, verbose);
            Ok(())
        }
        Cmd::Gate {
            results,
            thresholds,
            propose,
        } => gate(results, &thresholds, propose),
        Cmd::Readme {
            results,
            command,
            section,
        } => readme(&results, &command, &section),
        Cmd::Aggregate(a) => sweep::aggregate(a, verbose),
        Cmd::Bench(a) => speed::bench(*a),
    }
}

pub(crate) struct Bars {
    pub(crate) bar: ProgressBar,
}

impl forge_bench::runner::Observer for Bars {
    fn start(&mut self, total: usize) {
        self.bar.set_length(total as u64);
    }
    fn trial(&mut self, scenario: &str, seed: u64) {
        self.bar.set_message(format!("{scenario} seed {seed}"));
    }
    fn strategy_done(&mut self, scenario: &str, seed: u64, strategy: &str) {
        self.bar
            .set_message(format!("{scenario} seed {seed}: {strategy}"));
        self.bar.inc(1);
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn demo_mode(a: &DemoArgs) -> Mode {
    if a.quick {
        Mode::Quick
    } else if a.full {
        Mode::Full
    } else {
        Mode::Standard
    }
}

fn list(registry: &forge_bench::Registry, verbose: bool) -> Result<()> {
    let names = registry.names();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0);
    for name in names {
        let sc = registry.get(name).context("registry lookup")?;
        out!("{name:<w$}  {}", sc.description());
        if verbose {
            for s in sc.strategies() {
                out!("  {:<16} {:?}: {}", s.name, s.kind, s.description);
            }
        }
    }
    Ok(())
}

/// Sets the model folder and text data of `ctx` when the scenarios to run need them. A missing
/// model is an error only for scenarios named with --scenario; otherwise they are skipped (the
/// runner records why and the footer says what to set).
fn resolve_resources(
    a: &DemoArgs,
    registry: &forge_bench::Registry,
    mode: Mode,
    ctx: &mut forge_bench::RunContext,
) -> Result<()> {
    let named: Vec<_> = a.scenarios.iter().filter_map(|n| registry.get(n)).collect();
    let needs = |what: fn(forge_bench::scenario::Requirements) -> bool| {
        if named.is_empty() {
            registry.any_requires(mode, what)
        } else {
            named.iter().any(|s| what(s.requires()))
        }
    };
    // Only looked for when a scenario to run needs it (without a folder this may try the
    // Hugging Face cache and Hub, which takes seconds offline).
    if needs(|r| r.text_data) || a.text_data_dir.is_some() {
        ctx.text_data_dir = forge_bench::catalog::resolve_text_data_dir(a.text_data_dir.clone())?;
    }
    let needs_model = needs(|r| r.model);
    if !needs_model {
        return Ok(());
    }
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| forge_bench::catalog::DEFAULT_MODEL.to_string());
    match forge_bench::catalog::resolve_model(&model) {
        Ok(dir) => {
            ctx.model_dir = Some(dir);
            ctx.model_id = Some(model);
        }
        Err(e) if named.is_empty() => {
            eprintln!("note: {e}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

pub(crate) fn progress_bar(quiet: bool) -> Result<ProgressBar> {
    if quiet {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    b.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .context("progress template")?,
    );
    Ok(b)
}

fn demo(a: DemoArgs, verbose: bool) -> Result<()> {
    let t0 = Instant::now();
    let mode = demo_mode(&a);
    let registry = forge_bench::registry()?;
    if a.list {
        return list(&registry, verbose);
    }
    let quiet = a.quiet || in_ci();
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(forge_bench::default_data_dir);
    let mut ctx = forge_bench::context(mode, data_dir)?;
    resolve_resources(&a, &registry, mode, &mut ctx)?;
    let mut plan = forge_bench::RunPlan::for_mode(mode);
    if let Some(n) = a.seeds {
        if n == 0 {
            bail!("--seeds must be at least 1");
        }
        plan.seeds = (0..n as u64).collect();
    }
    if !a.scenarios.is_empty() {
        plan.scenarios = Some(a.scenarios.clone());
    }
    if a.sweep.executor == sweep::Executor::Local && (a.sweep.dry_run || a.sweep.resume) {
        bail!("--dry-run and --resume apply to --executor slurm");
    }
    match (a.sweep.executor, a.sweep.shard.as_deref()) {
        (sweep::Executor::Slurm, Some(_)) => {
            bail!("--shard runs one shard here; --executor slurm runs every shard (use --shards N)")
        }
        (sweep::Executor::Slurm, None) => return sweep::slurm(&a, &registry, &plan, &ctx, verbose),
        (sweep::Executor::Local, Some(spec)) => {
            return sweep::shard(&a, &registry, &plan, &ctx, spec, quiet)
        }
        (sweep::Executor::Local, None) => {}
    }
    let mut obs = Bars {
        bar: progress_bar(quiet)?,
    };
    let results = forge_bench::run(&registry, &plan, &ctx, &mut obs)?;
    // Show first, write after: a read-only or full output folder must not cost the run.
    if a.json {
        forge_bench::validate::validate(&results)?;
        out!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_tables(&results, verbose);
    }
    save(&results, a.save_json.as_ref())?;
    eprintln!(
        "demo --{} finished in {:.1} s ({} seed(s), {} scenario(s))",
        mode.name(),
        t0.elapsed().as_secs_f64(),
        results.run.seeds.len(),
        results.run.scenarios.len()
    );
    Ok(())
}

/// Saves `results` to the last-results path and to `save_json`, each with a fallback path
/// (see [`forge_bench::io::save_results`]), saying where they went.
pub(crate) fn save(results: &forge_bench::ResultsFile, save_json: Option<&PathBuf>) -> Result<()> {
    let mut paths = vec![last_results_path()];
    paths.extend(save_json.cloned());
    let saved = forge_bench::io::save_results(results, &paths, &std::env::temp_dir())?;
    for s in saved {
        match s {
            forge_bench::io::Saved::AtPath(p) if Some(&p) == save_json => {
                eprintln!("Results written to {}", p.display());
            }
            forge_bench::io::Saved::AtPath(_) => {}
            forge_bench::io::Saved::Fallback {
                wanted,
                error,
                written,
            } => eprintln!(
                "warning: could not write {} ({error}); the results were saved to {} instead",
                wanted.display(),
                written.display()
            ),
        }
    }
    Ok(())
}

pub(crate) fn print_tables(results: &forge_bench::ResultsFile, verbose: bool) {
    out!("{}", report::headline_table(results).to_text());
    if verbose {
        out!("{}", report::method_table(results).to_text());
    } else {
        for t in report::method_tables(results) {
            out!("{}", t.to_text());
        }
    }
    for t in report::metric_tables(results) {
        out!("{}", t.to_text());
    }
    let conv = report::convergence_table(results);
    if !conv.rows.is_empty() {
        out!("{}", conv.to_text());
    }
    if !results.gate.is_empty() {
        out!("{}", report::gate_table(results).to_text());
        if verbose {
            out!("{}", report::gate_details_table(results).to_text());
        }
    }
    let impact = report::impact_table(results);
    if !impact.rows.is_empty() {
        out!("{}", impact.to_text());
    }
    for line in report::footer(results) {
        out!("{}", report::wrap(&line, report::TERMINAL_WIDTH, 2));
    }
}

fn load(results: Option<PathBuf>) -> Result<(PathBuf, forge_bench::ResultsFile)> {
    let p = results.unwrap_or_else(last_results_path);
    if !p.exists() {
        bail!(
            "{} does not exist: run `cargo xtask demo --save-json PATH` first, or pass --results PATH",
            p.display()
        );
    }
    let r = forge_bench::io::read_results(&p)?;
    Ok((p, r))
}

fn figures(results: Option<PathBuf>, out: &Path) -> Result<()> {
    let (p, r) = load(results)?;
    let figs = forge_bench::figures::write_all(&r, out)?;
    for note in &figs.notes {
        out!("note: {note}");
    }
    for w in &figs.written {
        let dpi = forge_bench::figures::read_phys(w)?
            .map(|(x, _, m)| {
                if m {
                    format!("{:.0} DPI", f64::from(x) * 0.0254)
                } else {
                    "?".into()
                }
            })
            .unwrap_or_else(|| "no pHYs".into());
        out!("wrote {} ({dpi})", w.display());
    }
    out!("from {}", p.display());
    Ok(())
}

fn gate(results: Option<PathBuf>, thresholds: &Path, propose: bool) -> Result<()> {
    let (p, r) = load(results)?;
    if propose {
        let t = forge_bench::gates::propose(&r, 0.05, 0.5);
        out!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    let t: forge_bench::gates::Thresholds = forge_bench::io::read_json(thresholds)?;
    let rep = forge_bench::gates::check(&r, &t);
    if rep.passed() {
        out!(
            "gate OK: {} threshold(s) met by {} ({})",
            rep.checked,
            p.display(),
            thresholds.display()
        );
        Ok(())
    } else {
        eprintln!(
            "gate FAILED: {} of {} threshold(s) broken by {}:",
            rep.violations.len(),
            rep.checked,
            p.display()
        );
        for v in &rep.violations {
            eprintln!("  - {v}");
        }
        std::process::exit(1);
    }
}

fn readme(results: &Path, command: &str, name: &str) -> Result<()> {
    let r = forge_bench::io::read_results(results)?;
    let path = Path::new("README.md");
    let text = std::fs::read_to_string(path).context("read README.md")?;
    let section = report::readme_section(&r, command, name);
    let new = report::splice_readme_section(&text, name, &section)?;
    if new == text {
        out!("README.md is up to date");
    } else {
        forge_bench::io::write_atomic(path, new.as_bytes())?;
        out!(
            "README.md results section regenerated from {}",
            results.display()
        );
    }
    Ok(())
}
