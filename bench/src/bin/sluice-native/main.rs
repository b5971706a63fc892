//! `sluice-native`: the `sluice` command with the Stripe driver compiled into the process
//! (`native`), for `cargo xtask bench`'s native-driver row. Never shipped: `sluice serve`
//! runs every driver in the sandbox.

mod native;

use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main_with(sluice::node::Extensions {
        in_process: vec![("stripe".into(), Arc::new(native::NativeStripe))],
    })
}
