//! A dynamic-kind client: list objects of any kind the server serves —
//! built-in or a CRD — named at run time, with no Rust type for it. Discovery
//! turns the kind into its resource (plural, scope, verbs); `DynamicObject`
//! holds the object as JSON. A shared informer works the same way
//! (`InformerFactory::dynamic`).
//!
//! ```sh
//! export KUBECONFIG=$PWD/rk-data/kubeconfig
//! cargo run --example dynamic_client -- apps/v1 Deployment
//! cargo run -p rk-examples --bin web-app -- crd | kubectl apply -f -
//! cargo run --example dynamic_client -- examples.rk.dev/v1 WebApp
//! ```

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(api_version), Some(kind)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: dynamic_client <apiVersion> <Kind>, e.g. apps/v1 Deployment");
    };
    let client = Client::try_default().await?;
    // ANCHOR: dynamic
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), api_version.clone()), // the core group: "v1"
    };
    let gvk = kube::api::GroupVersionKind::gvk(&group, &version, &kind);
    let (resource, capabilities) = discovery::pinned_kind(&client, &gvk).await?;
    let namespaced = matches!(capabilities.scope, Scope::Namespaced);
    println!(
        "{kind} is {}, plural {:?}",
        if namespaced {
            "namespaced"
        } else {
            "cluster-scoped"
        },
        resource.plural
    );
    let api: Api<DynamicObject> = Api::all_with(client, &resource); // every namespace
    for obj in api.list(&ListParams::default()).await? {
        let spec = obj
            .data
            .get("spec")
            .map(|s| s.to_string())
            .unwrap_or_default();
        println!(
            "{}/{} {spec}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        );
    }
    // ANCHOR_END: dynamic
    Ok(())
}
