//! The process-wide metrics of rk's controllers: controller-runtime's
//! `controller_runtime_reconcile_total{controller,result}`,
//! `..._reconcile_errors_total`, `..._reconcile_time_seconds` and
//! `..._active_workers`, recorded by every controller's work loop and served
//! by `rk controller-manager --metrics-bind-address` on `/metrics`.

use std::sync::{Mutex, OnceLock};

use prometheus_client::registry::Registry;
use rk_runtime::controller::ControllerMetrics;

struct Global {
    registry: Mutex<Registry>,
    controllers: ControllerMetrics,
}

fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let mut registry = Registry::default();
        let controllers = ControllerMetrics::new(&mut registry);
        Global {
            registry: Mutex::new(registry),
            controllers,
        }
    })
}

/// The reconcile metrics every controller records into.
pub fn controllers() -> &'static ControllerMetrics {
    &global().controllers
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    let registry = global().registry.lock().unwrap_or_else(|p| p.into_inner());
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}
