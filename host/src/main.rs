//! The `sluice` command line: `serve`, operator commands, driver author tools.

/// The server allocates and frees many small values per delivery (headers, records, rows)
/// across threads; mimalloc does that markedly faster than glibc's malloc (`cargo xtask
/// bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
