//! `rk bench ...`: benchmark programs that print tables. Run them from a
//! release build (`cargo run --release -- bench NAME`).

mod apiserver;
mod cluster;
mod controllers;
mod http_client;
mod raw_http;
mod scheduler;

/// `rk bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// API server: HTTP creates/s vs raw storage writes/s, LIST latency of
    /// 10,000 pods from the watch cache, watch fan-out delay, memory.
    Apiserver(apiserver::Args),
    /// Workload controllers: ReplicaSet of 1,000 and 10,000 replicas to all
    /// pods created; a 1,000-replica Deployment rollout.
    Controllers(controllers::Args),
    /// The whole cluster as `rk up` runs it: time to Ready, idle RSS, pod
    /// startup latency (process and sim runtimes), proxy throughput.
    Cluster(cluster::Args),
    /// Scheduler: upstream scheduler_perf's SchedulingBasic and
    /// TopologySpreading workloads against an in-process API server.
    Scheduler(scheduler::Args),
}

/// Run a benchmark.
pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Apiserver(args) => apiserver::run(args).await,
        Bench::Controllers(args) => controllers::run(args).await,
        Bench::Cluster(args) => cluster::run(args).await,
        Bench::Scheduler(args) => scheduler::run(args).await,
    }
}
