//! The `rk` binary: one subcommand per component, and `rk up` for a whole
//! cluster in one process.

use clap::Parser;

mod cli;

/// jemalloc: allocation is a large share of the API server's request path,
/// and jemalloc is both faster than the system allocator there and frugal
/// with memory when idle.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli::run(args))
}
