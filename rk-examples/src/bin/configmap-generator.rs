//! The `configmap-generator` operator: `configmap-generator crd | kubectl
//! apply -f -`, then `configmap-generator run [--leader-elect]`.

use std::process::ExitCode;

use kube::CustomResourceExt;
use rk_examples::configmap_generator::{self, ConfigMapGenerator};

#[tokio::main]
async fn main() -> ExitCode {
    rk_examples::cli::main(
        "configmap-generator",
        ConfigMapGenerator::crd(),
        configmap_generator::manager,
    )
    .await
}
