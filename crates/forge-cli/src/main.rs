//! The `forge` binary: parses the command line and hands over to [`forge_cli::run`].
fn main() {
    std::process::exit(forge_cli::main_with_args(std::env::args_os()));
}
