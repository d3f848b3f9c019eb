//! The `web-app` operator: `web-app crd | kubectl apply -f -`, then
//! `web-app run [--leader-elect] [--metrics-bind ADDR]`.

use std::process::ExitCode;

use kube::CustomResourceExt;
use rk_examples::web_app::{self, WebApp};

#[tokio::main]
async fn main() -> ExitCode {
    rk_examples::cli::main("web-app", WebApp::crd(), web_app::manager).await
}
