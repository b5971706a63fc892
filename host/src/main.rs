//! The `sluice` command line: `serve`, operator commands, driver author tools.

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
