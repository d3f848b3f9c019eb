//! Component schemas of the built-in kinds, generated once from `k8s-openapi`
//! through `schemars` and shaped like upstream's (definition names, group
//! version kind extensions, required lists, patch strategies).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use k8s_openapi::Resource;
use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

/// Prefix of a component reference in an OpenAPI v3 document.
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";
/// Prefix of a definition reference in a swagger 2.0 document.
pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";

/// Definition names of the meta types every group version document carries.
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(crate) const API_GROUP: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup";
pub(crate) const API_GROUP_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList";
pub(crate) const API_VERSIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Upstream descriptions of the type meta fields, used for lists and CRDs.
pub(crate) const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
pub(crate) const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
pub(crate) const OBJECT_META_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const LIST_META_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#lists-and-simple-kinds";

/// The generated component schemas of every built-in kind rk knows.
pub(crate) struct Builtin {
    /// Definition name -> schema, with `#/components/schemas/` references.
    pub(crate) definitions: Map<String, Value>,
    /// (group, version, kind) -> definition name.
    pub(crate) kinds: BTreeMap<(String, String, String), String>,
}

/// The built-in schemas, generated on first use.
pub(crate) fn builtin() -> &'static Builtin {
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(generate)
}

/// One generated kind: its group/version/kind and definition name.
struct Entry {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    name: String,
}

fn entry<T: Resource + JsonSchema>(generator: &mut SchemaGenerator) -> Entry {
    generator.subschema_for::<T>();
    Entry {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        name: T::schema_name().into_owned(),
    }
}

macro_rules! kinds {
    ($generator:ident; $($ty:ty),* $(,)?) => {
        vec![$(entry::<$ty>(&mut $generator)),*]
    };
}

fn generate() -> Builtin {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    let entries = kinds![generator;
        api::core::v1::Binding,
        api::core::v1::ComponentStatus,
        api::core::v1::ConfigMap,
        api::core::v1::Endpoints,
        api::core::v1::Event,
        api::core::v1::LimitRange,
        api::core::v1::Namespace,
        api::core::v1::Node,
        api::core::v1::PersistentVolume,
        api::core::v1::PersistentVolumeClaim,
        api::core::v1::Pod,
        api::core::v1::PodTemplate,
        api::core::v1::ReplicationController,
        api::core::v1::ResourceQuota,
        api::core::v1::Secret,
        api::core::v1::Service,
        api::core::v1::ServiceAccount,
        api::apps::v1::ControllerRevision,
        api::apps::v1::DaemonSet,
        api::apps::v1::Deployment,
        api::apps::v1::ReplicaSet,
        api::apps::v1::StatefulSet,
        api::admissionregistration::v1::MutatingWebhookConfiguration,
        api::admissionregistration::v1::ValidatingWebhookConfiguration,
        api::admissionregistration::v1::ValidatingAdmissionPolicy,
        api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        api::admissionregistration::v1::MutatingAdmissionPolicy,
        api::admissionregistration::v1::MutatingAdmissionPolicyBinding,
        api::authentication::v1::SelfSubjectReview,
        api::authentication::v1::TokenRequest,
        api::authentication::v1::TokenReview,
        api::authorization::v1::LocalSubjectAccessReview,
        api::authorization::v1::SelfSubjectAccessReview,
        api::authorization::v1::SelfSubjectRulesReview,
        api::authorization::v1::SubjectAccessReview,
        api::autoscaling::v1::HorizontalPodAutoscaler,
        api::autoscaling::v1::Scale,
        api::autoscaling::v2::HorizontalPodAutoscaler,
        api::batch::v1::CronJob,
        api::batch::v1::Job,
        api::certificates::v1::CertificateSigningRequest,
        api::coordination::v1::Lease,
        api::discovery::v1::EndpointSlice,
        api::events::v1::Event,
        api::flowcontrol::v1::FlowSchema,
        api::flowcontrol::v1::PriorityLevelConfiguration,
        api::networking::v1::Ingress,
        api::networking::v1::IngressClass,
        api::networking::v1::IPAddress,
        api::networking::v1::NetworkPolicy,
        api::networking::v1::ServiceCIDR,
        api::node::v1::RuntimeClass,
        api::policy::v1::Eviction,
        api::policy::v1::PodDisruptionBudget,
        api::rbac::v1::ClusterRole,
        api::rbac::v1::ClusterRoleBinding,
        api::rbac::v1::Role,
        api::rbac::v1::RoleBinding,
        api::resource::v1::DeviceClass,
        api::resource::v1::ResourceClaim,
        api::resource::v1::ResourceClaimTemplate,
        api::resource::v1::ResourceSlice,
        api::scheduling::v1::PriorityClass,
        api::storage::v1::CSIDriver,
        api::storage::v1::CSINode,
        api::storage::v1::CSIStorageCapacity,
        api::storage::v1::StorageClass,
        api::storage::v1::VolumeAttachment,
        api::storage::v1::VolumeAttributesClass,
        apiext::CustomResourceDefinition,
        apireg::APIService,
    ];
    // Meta types the operations refer to.
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::WatchEvent<api::core::v1::Pod>>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::APIGroup>();
    generator.subschema_for::<meta::APIGroupList>();
    generator.subschema_for::<meta::APIVersions>();

    let mut definitions = generator.take_definitions(true);
    let mut kinds = BTreeMap::new();
    for e in &entries {
        kinds.insert(
            (e.group.to_owned(), e.version.to_owned(), e.kind.to_owned()),
            e.name.clone(),
        );
        if let Some(Value::Object(schema)) = definitions.get_mut(&e.name) {
            add_gvk(schema, e.group, e.version, e.kind);
            fix_required(schema, e.kind);
        }
    }
    for (definition, property, extensions) in PATCH_META {
        let Some(Value::Object(schema)) = definitions.get_mut(*definition) else {
            continue;
        };
        let Some(Value::Object(prop)) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(*property))
        else {
            continue;
        };
        for (key, value) in extensions.iter() {
            let value = if *key == "x-kubernetes-list-map-keys" {
                Value::Array(value.split(',').map(Value::from).collect())
            } else {
                Value::from(*value)
            };
            prop.insert((*key).to_owned(), value);
        }
    }
    Builtin { definitions, kinds }
}

/// Adds `x-kubernetes-group-version-kind: [{group, kind, version}]`.
pub(crate) fn add_gvk(schema: &mut Map<String, Value>, group: &str, version: &str, kind: &str) {
    schema.insert(
        "x-kubernetes-group-version-kind".to_owned(),
        json!([gvk(group, version, kind)]),
    );
}

/// One group/version/kind as the OpenAPI extensions spell it.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// Top-level kinds whose `spec` upstream marks as required.
const SPEC_REQUIRED: &[&str] = &[
    "TokenReview",
    "TokenRequest",
    "SelfSubjectAccessReview",
    "LocalSubjectAccessReview",
    "SubjectAccessReview",
    "SelfSubjectRulesReview",
    "CertificateSigningRequest",
    "ClusterTrustBundle",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ResourceSlice",
    "DeviceClass",
    "CustomResourceDefinition",
    "APIService",
];

/// `k8s-openapi` marks `metadata` (and usually `spec`) required so that its
/// Rust fields need no `Option`; upstream's documents do not, and kubectl's
/// client-side validation would reject manifests without them.
fn fix_required(schema: &mut Map<String, Value>, kind: &str) {
    let Some(Value::Array(required)) = schema.get_mut("required") else {
        return;
    };
    required.retain(|r| match r.as_str() {
        Some("metadata") => false,
        Some("spec") => SPEC_REQUIRED.contains(&kind),
        _ => true,
    });
    if required.is_empty() {
        schema.remove("required");
    }
}

type Extensions = &'static [(&'static str, &'static str)];

const MERGE_NAME: Extensions = &[
    ("x-kubernetes-patch-strategy", "merge"),
    ("x-kubernetes-patch-merge-key", "name"),
    ("x-kubernetes-list-type", "map"),
    ("x-kubernetes-list-map-keys", "name"),
];
const MERGE_RETAIN_NAME: Extensions = &[
    ("x-kubernetes-patch-strategy", "merge,retainKeys"),
    ("x-kubernetes-patch-merge-key", "name"),
    ("x-kubernetes-list-type", "map"),
    ("x-kubernetes-list-map-keys", "name"),
];
const MERGE_TYPE: Extensions = &[
    ("x-kubernetes-patch-strategy", "merge"),
    ("x-kubernetes-patch-merge-key", "type"),
    ("x-kubernetes-list-type", "map"),
    ("x-kubernetes-list-map-keys", "type"),
];
const RETAIN_KEYS: Extensions = &[("x-kubernetes-patch-strategy", "retainKeys")];
const ATOMIC: Extensions = &[("x-kubernetes-list-type", "atomic")];

/// Strategic merge patch metadata of the most used built-in fields, as
/// upstream's documents carry it (kubectl's client-side apply reads it).
const PATCH_META: &[(&str, &str, Extensions)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-list-type", "set"),
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "uid"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "uid"),
        ],
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", MERGE_NAME),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", MERGE_NAME),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        MERGE_NAME,
    ),
    ("io.k8s.api.core.v1.PodSpec", "volumes", MERGE_RETAIN_NAME),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", MERGE_NAME),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        MERGE_RETAIN_NAME,
    ),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", MERGE_NAME),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", ATOMIC),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "ip"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "ip"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "topologyKey"),
            ("x-kubernetes-list-type", "map"),
            (
                "x-kubernetes-list-map-keys",
                "topologyKey,whenUnsatisfiable",
            ),
        ],
    ),
    ("io.k8s.api.core.v1.Container", "env", MERGE_NAME),
    ("io.k8s.api.core.v1.Container", "envFrom", ATOMIC),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "containerPort"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "containerPort,protocol"),
        ],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "mountPath"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "mountPath"),
        ],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "devicePath"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "devicePath"),
        ],
    ),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", MERGE_NAME),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "port"),
            ("x-kubernetes-list-type", "map"),
            ("x-kubernetes-list-map-keys", "port,protocol"),
        ],
    ),
    ("io.k8s.api.core.v1.PodStatus", "conditions", MERGE_TYPE),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", MERGE_TYPE),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", MERGE_TYPE),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        MERGE_TYPE,
    ),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", RETAIN_KEYS),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        MERGE_TYPE,
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        &[
            ("x-kubernetes-patch-strategy", "merge"),
            ("x-kubernetes-patch-merge-key", "type"),
            ("x-kubernetes-list-type", "atomic"),
        ],
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        MERGE_TYPE,
    ),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", ATOMIC),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", ATOMIC),
];

/// Adds every definition reachable from `roots` to `out`.
pub(crate) fn collect_closure(
    definitions: &Map<String, Value>,
    roots: impl IntoIterator<Item = String>,
    out: &mut BTreeMap<String, Value>,
) {
    let mut pending: Vec<String> = roots.into_iter().collect();
    let mut seen: BTreeSet<String> = out.keys().cloned().collect();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(schema) = definitions.get(&name) else {
            continue;
        };
        let mut refs = Vec::new();
        collect_refs(schema, &mut refs, 0);
        for r in refs {
            if !seen.contains(&r) {
                pending.push(r);
            }
        }
        out.insert(name, schema.clone());
    }
}

/// Names referenced (`$ref`) anywhere in `value`.
fn collect_refs(value: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > 256 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.strip_prefix(V3_REF_PREFIX)) {
                        out.push(name.to_owned());
                    }
                } else {
                    collect_refs(v, out, depth + 1);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out, depth + 1)),
        _ => {}
    }
}
