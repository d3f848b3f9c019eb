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

/// A C string jemalloc reads at start.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` C string literal, never written.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

/// jemalloc's built-in settings (`_RJEM_MALLOC_CONF` in the environment
/// still overrides them):
/// - one arena, not jemalloc's four per CPU. Objects made on one thread and
///   dropped on another (every watch event, every cached pod) left partly
///   used pages in many arenas; with one arena `rk up` holding 30,000 sim
///   pods is 5-8% smaller and `rk apiserver` with 10,000 pods 106 -> 98 MB,
///   with creates/s unchanged within their noise (each thread still
///   allocates from its own cache first);
/// - a background thread returning freed pages to the OS, instead of the
///   allocating threads doing it as they go (and an idle process not at
///   all): the API server's CPU per pod create fell ~5% (80 -> 74 µs in
///   alternating runs, docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
#[used]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(c"narenas:1,background_thread:true".as_ptr());

/// Hands the memory freed so far back to the OS now, rather than after
/// jemalloc's decay (10 s): called once a component has started, whose
/// start-up work (the OpenAPI documents hashed and dropped, the catalogue's
/// tables, the store's index read) freed about 10 MB that an idle process
/// would otherwise still hold for a while.
pub(crate) fn release_freed_memory() {
    #[cfg(feature = "jemalloc")]
    // SAFETY: `arena.4096.purge` (4096 is MALLCTL_ARENAS_ALL) neither reads
    // nor writes a value, so every pointer is null and the length 0; the
    // name is a NUL-terminated static string.
    unsafe {
        let status = tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
        if status != 0 {
            tracing::debug!(status, "jemalloc purge failed");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli::run(args))
}
