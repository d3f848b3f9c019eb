//! Which fields each kind can be selected on, and their values in an object.

use std::collections::BTreeMap;

use serde_json::Value;

const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const SECRET: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const NODE: &[&str] = &["metadata.name", "metadata.namespace", "spec.unschedulable"];
const NAMESPACE: &[&str] = &["metadata.name", "metadata.namespace", "status.phase"];
const REPLICAS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR: &[&str] = &["metadata.name", "metadata.namespace", "spec.signerName"];

/// The fields a kind can be selected on, as upstream's field label
/// conversions allow them: `metadata.name` and `metadata.namespace` for every
/// kind, plus per-kind fields (Pod `spec.nodeName`, `status.phase`, ...;
/// Event `involvedObject.*`, `reason`, `source`, `type`, ...; Secret `type`;
/// Node `spec.unschedulable`; Namespace `status.phase`; ReplicaSet and
/// ReplicationController `status.replicas`; Job `status.successful`;
/// CertificateSigningRequest `spec.signerName`).
#[must_use]
pub fn supported_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => POD,
        "Event" => EVENT,
        "Secret" => SECRET,
        "Node" => NODE,
        "Namespace" => NAMESPACE,
        "ReplicaSet" | "ReplicationController" => REPLICAS,
        "Job" => JOB,
        "CertificateSigningRequest" => CSR,
        _ => META,
    }
}

/// The upstream name of a field alias: Pod `spec.host` (sent by old
/// clients) means `spec.nodeName`.
pub(super) fn canonical_field<'a>(kind: &str, field: &'a str) -> &'a str {
    match (kind, field) {
        ("Pod", "spec.host") => "spec.nodeName",
        _ => field,
    }
}

/// The value at a dotted `path` (`spec.nodeName`) of a JSON object: strings
/// as they are, booleans and numbers printed (`true`, `3`). `None` when the
/// path is absent or leads to null, an object or an array.
///
/// ```
/// use rk_core::fields::object_field;
/// let pod = serde_json::json!({"spec": {"nodeName": "n1", "hostNetwork": true}});
/// assert_eq!(object_field(&pod, "spec.nodeName").as_deref(), Some("n1"));
/// assert_eq!(object_field(&pod, "spec.hostNetwork").as_deref(), Some("true"));
/// assert_eq!(object_field(&pod, "status.phase"), None);
/// ```
#[must_use]
pub fn object_field(obj: &Value, path: &str) -> Option<String> {
    let value = path
        .split('.')
        .try_fold(obj, |value, segment| value.get(segment))?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The value upstream gives a selectable field of an object of `kind`, or
/// `None` if the kind cannot be selected on `field`. Absent fields get
/// upstream's zero values: `""` for strings, `false` for Pod
/// `spec.hostNetwork` and Node `spec.unschedulable`, `0` for `status.replicas`
/// and Job `status.successful` (which reads `status.succeeded`); Event
/// `source` reads `source.component`.
///
/// ```
/// use rk_core::fields::field_value;
/// let node = serde_json::json!({"metadata": {"name": "n1"}, "spec": {}});
/// assert_eq!(field_value("Node", &node, "spec.unschedulable").as_deref(), Some("false"));
/// assert_eq!(field_value("Node", &node, "status.phase"), None);
/// ```
#[must_use]
pub fn field_value(kind: &str, obj: &Value, field: &str) -> Option<String> {
    let field = canonical_field(kind, field);
    if !supported_fields(kind).contains(&field) {
        return None;
    }
    Some(supported_field_value(kind, obj, field))
}

/// [`field_value`] of a field `kind` supports.
fn supported_field_value(kind: &str, obj: &Value, field: &str) -> String {
    let (path, default) = match (kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => (field, "false"),
        ("ReplicaSet" | "ReplicationController", "status.replicas") => (field, "0"),
        ("Job", "status.successful") => ("status.succeeded", "0"),
        ("Event", "source") => ("source.component", ""),
        _ => (field, ""),
    };
    object_field(obj, path).unwrap_or_else(|| default.to_owned())
}

/// Every selectable field of an object of `kind` with its value (see
/// [`field_value`]): what a watch cache keeps next to each object so field
/// selectors can be answered without decoding it.
#[must_use]
pub fn selectable_fields(kind: &str, obj: &Value) -> BTreeMap<&'static str, String> {
    selectable_field_values(kind, obj).collect()
}

/// [`selectable_fields`] in [`supported_fields`]' order, without a map:
/// what a watch cache computes for each object it stores.
pub fn selectable_field_values<'a>(
    kind: &'a str,
    obj: &'a Value,
) -> impl Iterator<Item = (&'static str, String)> + 'a {
    supported_fields(kind)
        .iter()
        .map(move |field| (*field, supported_field_value(kind, obj, field)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_kind_supports_name_and_namespace() {
        for kind in [
            "Pod",
            "Event",
            "Secret",
            "Node",
            "Namespace",
            "ReplicaSet",
            "Job",
            "ConfigMap",
            "Widget",
        ] {
            let fields = supported_fields(kind);
            assert!(
                fields.contains(&"metadata.name") && fields.contains(&"metadata.namespace"),
                "{kind}"
            );
        }
        assert_eq!(supported_fields("ConfigMap"), META);
    }

    #[test]
    fn object_field_reads_strings_bools_and_numbers() {
        let obj =
            json!({"a": {"s": "x", "b": false, "n": 3, "f": 1.5, "o": {}, "l": [], "z": null}});
        assert_eq!(object_field(&obj, "a.s").as_deref(), Some("x"));
        assert_eq!(object_field(&obj, "a.b").as_deref(), Some("false"));
        assert_eq!(object_field(&obj, "a.n").as_deref(), Some("3"));
        assert_eq!(object_field(&obj, "a.f").as_deref(), Some("1.5"));
        for absent in ["a.o", "a.l", "a.z", "a.missing", "a.s.deeper", "", "a"] {
            assert_eq!(object_field(&obj, absent), None, "{absent}");
        }
    }

    #[test]
    fn pod_fields_use_upstream_defaults() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        });
        let fields = selectable_fields("Pod", &pod);
        assert_eq!(fields["metadata.name"], "p");
        assert_eq!(fields["spec.nodeName"], "n1");
        assert_eq!(fields["spec.hostNetwork"], "false");
        assert_eq!(fields["spec.schedulerName"], "");
        assert_eq!(fields["status.podIP"], "10.0.0.1");
        assert_eq!(fields.len(), POD.len());
    }

    #[test]
    fn event_source_reads_the_component() {
        let event = json!({"source": {"component": "kubelet"}, "reportingComponent": "rk", "type": "Normal"});
        assert_eq!(
            field_value("Event", &event, "source").as_deref(),
            Some("kubelet")
        );
        assert_eq!(
            field_value("Event", &event, "reportingComponent").as_deref(),
            Some("rk")
        );
        assert_eq!(
            field_value("Event", &event, "type").as_deref(),
            Some("Normal")
        );
    }

    #[test]
    fn counts_default_to_zero_and_job_reads_succeeded() {
        assert_eq!(
            field_value("ReplicaSet", &json!({}), "status.replicas").as_deref(),
            Some("0")
        );
        let job = json!({"status": {"succeeded": 2}});
        assert_eq!(
            field_value("Job", &job, "status.successful").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn pod_spec_host_is_an_alias_of_node_name() {
        let pod = json!({"spec": {"nodeName": "n1"}});
        assert_eq!(field_value("Pod", &pod, "spec.host").as_deref(), Some("n1"));
        assert_eq!(field_value("Node", &pod, "spec.host"), None);
    }
}
