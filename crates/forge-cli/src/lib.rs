//! forge-cli: the `forge` command line, thin over the Forge library crates.
//!
//! | command | library | what |
//! |---|---|---|
//! | `forge track -- CMD ARGS...` | forge-carbon | energy and CO2 of a command's whole process tree, CodeCarbon-compatible CSV row |
//! | `forge gate` | forge-safety, forge-data | the tabular negative-transfer gate on two CSV files; exit code 0 / 1 / 2 |
//! | `forge rank --target data.tsv MODEL...` | forge-safety, forge-models | LogME/LEEP ranking and verdicts of candidate models on your labelled texts |
//! | `forge finetune --model M --train data.tsv [--val data.tsv] [--lora r] -o OUT` | forge-models, forge-lora, forge-carbon | fine-tuning on your labelled texts, energy and CO2 recorded |
//! | `forge sweep FILE --out DIR [--shard i/N] [--executor local\|slurm]` | forge-linalg (cluster) | a sweep file's models x methods x seeds x hyperparameters, each unit a `forge finetune`, run here, one shard, or as a Slurm job array; results in `DIR/sweep.json` |
//! | `forge merge CONFIG.yml -o OUT` | forge-merge | mergekit-style YAML merge, streamed over the checkpoints, with a per-tensor summary |
//! | `forge lora soup A B ... -o OUT` | forge-merge | LoRA adapters of one base combined into one adapter |
//! | `forge lora inspect DIR` | forge-lora | rank, alpha, targets, parameter count and size of a PEFT adapter |
//! | `forge lora merge BASE ADAPTER -o OUT` | forge-lora, forge-models | the adapter folded into the base weights, saved as a transformers checkpoint |
//! | `forge completions SHELL` | clap_complete | shell completions |
//!
//! Conventions: `--json` on every command prints one JSON document on stdout; errors are one
//! line on stderr (`error: ...`) with the exit codes of [`error`]; `RUST_LOG` (e.g.
//! `RUST_LOG=debug`) turns on the libraries' `tracing` events on stderr; progress bars are drawn
//! on stderr only when it is a terminal and `CI` is unset.
//!
//! The binary is `src/main.rs`, which calls [`main_with_args`]; the commands are also callable
//! as functions ([`commands`]).
#![deny(missing_docs)]

pub mod commands;
pub mod error;
pub mod ui;

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

pub use error::{CliError, Result};
pub use ui::Ui;

/// The `forge` command line.
#[derive(Debug, Parser)]
#[command(
    name = "forge",
    version,
    about = "Carbon-aware transfer learning from the shell: measure a command's CO2, gate a transfer on your own data, manage LoRA adapters",
    after_help = "Examples:
  forge track -- python train.py
  forge gate --source old.csv --target new.csv --target-col price
  forge completions bash > ~/.local/share/bash-completion/completions/forge

Set RUST_LOG=debug for detail. Exit codes: 64 usage error, 65 bad input (missing file, unknown column, bad YAML),\n70 internal error, 74 cannot write; `forge gate`: 0 transfer, 1 caution, 2 block; `forge track`: the command's own."
)]
pub struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a command and measure the energy and CO2 of its whole process tree.
    Track(commands::track::TrackArgs),
    /// Should a model trained on SOURCE be transferred to TARGET? The tabular safety gate on two CSV files.
    Gate(commands::gate::GateArgs),
    /// Fine-tune a model (full or LoRA) on your labelled texts, with carbon tracking.
    Finetune(commands::finetune::FinetuneArgs),
    /// Run a sweep of fine-tunings (models x methods x seeds x hyperparameters) here, one shard,
    /// or as a Slurm job array.
    Sweep(commands::sweep::SweepArgs),
    /// Merge checkpoints from a mergekit-style YAML (linear, SLERP, task arithmetic, TIES, DARE, ...).
    Merge(commands::merge::MergeArgs),
    /// Rank candidate models for your labelled texts (LogME / LEEP encoder gate) before fine-tuning.
    Rank(commands::rank::RankArgs),
    /// LoRA adapters (PEFT format): inspect, fold into a base checkpoint, combine (soup).
    #[command(subcommand)]
    Lora(commands::lora::LoraCmd),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  forge completions bash > ~/.local/share/bash-completion/completions/forge
  forge completions zsh > ~/.zfunc/_forge
  forge completions fish > ~/.config/fish/completions/forge.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line; returns the exit code.
///
/// # Errors
/// Every command's error (see [`CliError::exit_code`]).
pub fn run(cli: Cli) -> Result<i32> {
    let mut ui = Ui::new(cli.json, cli.quiet);
    match cli.command {
        Cmd::Track(a) => commands::track::run(&a, &mut ui),
        Cmd::Gate(a) => commands::gate::run(&a, &mut ui),
        Cmd::Lora(c) => commands::lora::run(&c, &mut ui),
        Cmd::Rank(a) => commands::rank::run(&a, &mut ui),
        Cmd::Merge(a) => commands::merge::run(&a, &mut ui),
        Cmd::Finetune(a) => commands::finetune::run(&a, &mut ui),
        Cmd::Sweep(a) => commands::sweep::run(&a, &mut ui),
        Cmd::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "forge", &mut buf);
            ui.print(&String::from_utf8_lossy(&buf))?;
            Ok(0)
        }
    }
}

/// A clap error as one line: the message lines without the usage block and the `--help` tip.
fn clap_one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    let mut in_usage = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if l.is_empty() {
            in_usage = false;
            continue;
        }
        if in_usage || l.starts_with("For more information") {
            continue;
        }
        parts.push(l.trim_start_matches("error:").trim().to_string());
    }
    parts.join(" ")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("error: internal error: {msg}{at} (please report this)");
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }));
}

/// The whole program: parses `args` (the first is the program name), runs the command, prints
/// errors as one line on stderr and returns the process exit code.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    install_panic_hook();
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    0
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    error::EXIT_USAGE
                }
                _ => {
                    Ui::new(false, true).eprint(&format!(
                        "error: {} (see `forge --help`)\n",
                        clap_one_line(&e)
                    ));
                    error::EXIT_USAGE
                }
            };
        }
    };
    init_tracing();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            Ui::new(false, true).eprint(&format!("error: {}\n", e.one_line()));
            e.exit_code()
        }
        Err(_) => error::EXIT_SOFTWARE,
    }
}
