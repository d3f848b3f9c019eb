//! Table columns for `kubectl get`, as kube-apiserver prints them
//! (`pkg/printers/internalversion/printers.go`), and custom resources'
//! `additionalPrinterColumns`.

use rk_core::catalogue::ResourceInfo;
use rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};

mod cells;
mod jsonpath;

pub use cells::human_duration;

/// (name, type, format, priority)
type Col = (&'static str, &'static str, &'static str, i64);

const NAME: Col = ("Name", "string", "name", 0);
const AGE: Col = ("Age", "string", "", 0);

fn defs(cols: &[Col]) -> Vec<Value> {
    cols.iter()
        .map(|(name, ty, format, priority)| {
            json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
        })
        .collect()
}

fn builtin_columns(info: &ResourceInfo) -> Vec<Col> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
            ("Nominated Node", "string", "", 1),
            ("Readiness Gates", "string", "", 1),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        ("apps", "ReplicaSet") | ("", "ReplicationController") => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        ("apps", "StatefulSet") => {
            vec![
                NAME,
                ("Ready", "string", "", 0),
                AGE,
                ("Containers", "string", "", 1),
                ("Images", "string", "", 1),
            ]
        }
        ("apps", "ControllerRevision") => {
            vec![
                NAME,
                ("Controller", "string", "", 0),
                ("Revision", "integer", "", 0),
                AGE,
            ]
        }
        ("batch", "Job") => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Completions", "string", "", 0),
            ("Duration", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        ("batch", "CronJob") => vec![
            NAME,
            ("Schedule", "string", "", 0),
            ("Timezone", "string", "", 0),
            ("Suspend", "boolean", "", 0),
            ("Active", "integer", "", 0),
            ("Last Schedule", "string", "", 0),
            AGE,
            ("Containers", "string", "", 1),
            ("Images", "string", "", 1),
            ("Selector", "string", "", 1),
        ],
        ("", "Service") => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
            ("Selector", "string", "", 1),
        ],
        ("", "Node") => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
            ("Internal-IP", "string", "", 1),
            ("External-IP", "string", "", 1),
            ("OS-Image", "string", "", 1),
            ("Kernel-Version", "string", "", 1),
            ("Container-Runtime", "string", "", 1),
        ],
        ("", "Namespace") => vec![NAME, ("Status", "string", "", 0), AGE],
        ("", "ConfigMap") => vec![NAME, ("Data", "integer", "", 0), AGE],
        ("", "Secret") => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Data", "integer", "", 0),
            AGE,
        ],
        ("", "ServiceAccount") => vec![NAME, ("Secrets", "integer", "", 0), AGE],
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            vec![NAME, ("Webhooks", "integer", "", 0), AGE]
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => vec![
            NAME,
            ("Validations", "integer", "", 0),
            ("ParamKind", "string", "", 0),
            AGE,
        ],
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => vec![
            NAME,
            ("PolicyName", "string", "", 0),
            ("ParamRef", "string", "", 0),
            AGE,
        ],
        ("", "Endpoints") => vec![NAME, ("Endpoints", "string", "", 0), AGE],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            ("AddressType", "string", "", 0),
            ("Ports", "string", "", 0),
            ("Endpoints", "string", "", 0),
            AGE,
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Message", "string", "", 0),
        ],
        ("coordination.k8s.io", "Lease") => vec![NAME, ("Holder", "string", "", 0), AGE],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Volume", "string", "", 0),
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("StorageClass", "string", "", 0),
            AGE,
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            ("Capacity", "string", "", 0),
            ("Access Modes", "string", "", 0),
            ("Reclaim Policy", "string", "", 0),
            ("Status", "string", "", 0),
            ("Claim", "string", "", 0),
            ("StorageClass", "string", "", 0),
            AGE,
        ],
        ("networking.k8s.io", "Ingress") => vec![
            NAME,
            ("Class", "string", "", 0),
            ("Hosts", "string", "", 0),
            ("Address", "string", "", 0),
            ("Ports", "string", "", 0),
            AGE,
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            ("Reference", "string", "", 0),
            ("Targets", "string", "", 0),
            ("MinPods", "string", "", 0),
            ("MaxPods", "integer", "", 0),
            ("Replicas", "integer", "", 0),
            AGE,
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            AGE,
        ],
        ("scheduling.k8s.io", "PriorityClass") => {
            vec![
                NAME,
                ("Value", "integer", "", 0),
                ("Global-Default", "boolean", "", 0),
                AGE,
            ]
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition")
        | ("rbac.authorization.k8s.io", "Role")
        | ("rbac.authorization.k8s.io", "ClusterRole")
        | ("", "LimitRange") => vec![NAME, ("Created At", "date", "", 0)],
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => vec![
            NAME,
            ("Role", "string", "", 0),
            AGE,
            ("Users", "string", "", 1),
            ("Groups", "string", "", 1),
            ("ServiceAccounts", "string", "", 1),
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            AGE,
            ("Request", "string", "", 0),
            ("Limit", "string", "", 0),
        ],
        _ => vec![NAME, AGE],
    }
}

/// Column definitions (`metav1.TableColumnDefinition`) of a built-in kind.
pub fn columns(info: &ResourceInfo) -> Vec<Value> {
    defs(&builtin_columns(info))
}

/// One row's cells for a built-in kind.
pub fn row_cells(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let cols = builtin_columns(info);
    cells::row(info, obj, now, cols.len())
}

/// Column definitions for a custom resource: Name, then the CRD's
/// `additionalPrinterColumns`, or Name and Age when it declares none.
pub fn crd_columns(cols: &[CustomResourceColumnDefinition]) -> Vec<Value> {
    if cols.is_empty() {
        return defs(&[NAME, ("Age", "date", "", 0)]);
    }
    let mut out = defs(&[NAME]);
    out.extend(cols.iter().map(|c| {
        json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format.clone().unwrap_or_default(),
            "description": c.description.clone().unwrap_or_default(),
            "priority": c.priority.unwrap_or(0),
        })
    }));
    out
}

/// One row's cells for a custom resource.
pub fn crd_row_cells(
    cols: &[CustomResourceColumnDefinition],
    obj: &Value,
    now: jiff::Timestamp,
) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    if cols.is_empty() {
        return vec![
            name,
            json!(cells::age(&obj["metadata"]["creationTimestamp"], now)),
        ];
    }
    let mut out = vec![name];
    for c in cols {
        let values = jsonpath::eval(obj, &c.json_path);
        let cell = match (c.type_.as_str(), values.as_slice()) {
            (_, []) => Value::Null,
            ("date", [v, ..]) => json!(cells::age(v, now)),
            ("integer" | "number" | "boolean", [v]) => (*v).clone(),
            (_, [v]) => match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => (*v).clone(),
                other => json!(other.to_string()),
            },
            (_, many) => json!(
                many.iter()
                    .map(|v| v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        out.push(cell);
    }
    out
}
