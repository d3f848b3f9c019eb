//! The `scheduled-backup` operator: `scheduled-backup crd | kubectl apply
//! -f -`, then `scheduled-backup run [--leader-elect]`.

use std::process::ExitCode;

use kube::CustomResourceExt;
use rk_examples::scheduled_backup::{self, Backup};

#[tokio::main]
async fn main() -> ExitCode {
    rk_examples::cli::main("scheduled-backup", Backup::crd(), scheduled_backup::manager).await
}
