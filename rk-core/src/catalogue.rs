//! The resource catalogue: every kind rk serves, with the facts the API server
//! routes and answers discovery from, and clients resolve names with.
//!
//! A [`Catalogue`] starts with the built-in kinds ([`Catalogue::builtin`]);
//! CustomResourceDefinitions add and remove entries at run time
//! ([`Catalogue::insert`], [`Catalogue::remove`]).
//!
//! ```
//! use rk_core::catalogue::{Catalogue, Scope};
//!
//! let cat = Catalogue::builtin();
//! let deploy = cat.resolve("deploy").unwrap();
//! assert_eq!(deploy.group, "apps");
//! assert_eq!(deploy.plural, "deployments");
//! assert_eq!(deploy.scope, Scope::Namespaced);
//! assert!(deploy.has_subresource("scale"));
//! assert_eq!(cat.resolve("nodes").unwrap().scope, Scope::Cluster);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Whether objects of a kind live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Objects live in a namespace (`/namespaces/{ns}/{plural}/{name}`).
    Namespaced,
    /// Objects are cluster-wide (`/{plural}/{name}`).
    Cluster,
}

impl Scope {
    /// True for [`Scope::Namespaced`].
    pub fn is_namespaced(self) -> bool {
        self == Scope::Namespaced
    }
}

/// The verbs of a resource that is stored and fully served.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The verbs of a virtual resource that only accepts creation (reviews, bindings).
pub const CREATE_ONLY_VERBS: &[&str] = &["create"];

/// One served resource (a kind at one group/version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Lower-case plural used in URLs, e.g. `deployments`.
    pub plural: String,
    /// Lower-case singular, e.g. `deployment`.
    pub singular: String,
    /// Short names kubectl accepts, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Verbs served on the main resource.
    pub verbs: Vec<String>,
    /// Subresources served, e.g. `status`, `scale`.
    pub subresources: Vec<String>,
    /// False for virtual kinds that are never stored (reviews).
    pub stored: bool,
}

impl ResourceInfo {
    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of the list, e.g. `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// True if `name` (e.g. `status`) is a served subresource.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s == name)
    }

    /// True if `verb` is served on the main resource.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The storage key prefix for this resource, as kube-apiserver lays it out:
    /// `/registry/<group-prefix><plural>/`. Core and most groups use the bare
    /// plural; custom resources use `<group>/<plural>`.
    pub fn storage_prefix(&self) -> String {
        let mut prefix = String::with_capacity(64);
        self.push_storage_prefix(&mut prefix);
        prefix
    }

    fn push_storage_prefix(&self, out: &mut String) {
        out.push_str("/registry/");
        if self.group.is_empty() || is_builtin_group(&self.group) {
            out.push_str(storage_resource_name(&self.plural));
        } else {
            out.push_str(&self.group);
            out.push('/');
            out.push_str(&self.plural);
        }
        out.push('/');
    }

    /// The storage key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        let mut key = String::with_capacity(64 + name.len());
        self.push_storage_prefix(&mut key);
        if let (Scope::Namespaced, Some(ns)) = (self.scope, namespace) {
            key.push_str(ns);
            key.push('/');
        }
        key.push_str(name);
        key
    }
}

/// kube-apiserver stores a few resources under names other than their plural.
fn storage_resource_name(plural: &str) -> &str {
    match plural {
        "services" => "services/specs",
        "endpoints" => "services/endpoints",
        "replicationcontrollers" => "controllers",
        "nodes" => "minions",
        "customresourcedefinitions" => "apiextensions.k8s.io/customresourcedefinitions",
        other => other,
    }
}

/// Groups whose resources kube-apiserver stores without a group prefix.
fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUP_ORDER.contains(&group)
}

/// The order in which upstream's discovery lists the built-in groups.
pub const BUILTIN_GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
];

/// Errors from catalogue changes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogueError {
    /// The entry would clash with a built-in resource.
    #[error("resource {plural}.{group} is built in and cannot be replaced")]
    BuiltinClash {
        /// Group of the entry.
        group: String,
        /// Plural of the entry.
        plural: String,
    },
}

/// A set of served resources with lookups by plural, kind and short name.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    /// Keyed by (group, version, plural).
    entries: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
    /// The same entries by group, then version, then plural: looked up on
    /// every request without building a key.
    by_path: PathIndex,
}

/// Every request looks its resource up here, several times: hashed with
/// foldhash rather than SipHash (the keys are the server's own names).
type FastMap<V> = HashMap<String, V, foldhash::fast::RandomState>;
type PathIndex = FastMap<FastMap<FastMap<Arc<ResourceInfo>>>>;

struct Spec {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    scope: Scope,
    subresources: &'static [&'static str],
    all: bool,
    stored: bool,
    /// A virtual kind served for reading (`get`, `list`), not creation.
    read_only: bool,
}

const fn ns(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Spec {
    Spec {
        group,
        version,
        kind,
        plural,
        short,
        scope: Scope::Namespaced,
        subresources,
        all: false,
        stored: true,
        read_only: false,
    }
}

const fn cluster(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Spec {
    Spec {
        group,
        version,
        kind,
        plural,
        short,
        scope: Scope::Cluster,
        subresources,
        all: false,
        stored: true,
        read_only: false,
    }
}

const fn in_all(mut s: Spec) -> Spec {
    s.all = true;
    s
}

const fn virtual_kind(mut s: Spec) -> Spec {
    s.stored = false;
    s
}

/// A virtual kind computed when read (resource metrics).
const fn computed_kind(mut s: Spec) -> Spec {
    s.stored = false;
    s.read_only = true;
    s
}

/// The verbs of a virtual resource computed when read (resource metrics).
pub const READ_ONLY_VERBS: &[&str] = &["get", "list"];

const BUILTINS: &[Spec] = &[
    // core/v1
    in_all(ns(
        "",
        "v1",
        "Pod",
        "pods",
        &["po"],
        &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
        ],
    )),
    cluster("", "v1", "Node", "nodes", &["no"], &["status"]),
    cluster(
        "",
        "v1",
        "Namespace",
        "namespaces",
        &["ns"],
        &["status", "finalize"],
    ),
    in_all(ns("", "v1", "Service", "services", &["svc"], &["status"])),
    ns("", "v1", "Endpoints", "endpoints", &["ep"], &[]),
    ns("", "v1", "ConfigMap", "configmaps", &["cm"], &[]),
    ns("", "v1", "Secret", "secrets", &[], &[]),
    ns(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        &["token"],
    ),
    ns("", "v1", "Event", "events", &["ev"], &[]),
    in_all(ns(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        &["status", "scale"],
    )),
    ns(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        &["status"],
    ),
    ns("", "v1", "LimitRange", "limitranges", &["limits"], &[]),
    cluster(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        &["status"],
    ),
    ns(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        &["status"],
    ),
    ns("", "v1", "PodTemplate", "podtemplates", &[], &[]),
    // apps/v1
    in_all(ns(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        &["rs"],
        &["status", "scale"],
    )),
    in_all(ns(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        &["status", "scale"],
    )),
    in_all(ns(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        &["ds"],
        &["status"],
    )),
    in_all(ns(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        &["sts"],
        &["status", "scale"],
    )),
    ns(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        &[],
        &[],
    ),
    // batch/v1
    in_all(ns("batch", "v1", "Job", "jobs", &[], &["status"])),
    in_all(ns(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        &["cj"],
        &["status"],
    )),
    // coordination.k8s.io/v1
    ns("coordination.k8s.io", "v1", "Lease", "leases", &[], &[]),
    // discovery.k8s.io/v1
    ns(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        &[],
    ),
    // events.k8s.io/v1
    ns("events.k8s.io", "v1", "Event", "events", &["ev"], &[]),
    // networking.k8s.io/v1
    ns(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        &["status"],
    ),
    cluster(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        &[],
        &[],
    ),
    ns(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        &[],
    ),
    // rbac.authorization.k8s.io/v1
    ns("rbac.authorization.k8s.io", "v1", "Role", "roles", &[], &[]),
    cluster(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        &[],
    ),
    ns(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        &[],
    ),
    cluster(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        &[],
    ),
    // authorization.k8s.io/v1 (virtual)
    virtual_kind(cluster(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        &[],
        &[],
    )),
    virtual_kind(cluster(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        &[],
        &[],
    )),
    virtual_kind(cluster(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        &[],
        &[],
    )),
    virtual_kind(ns(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        &[],
        &[],
    )),
    // authentication.k8s.io/v1 (virtual)
    virtual_kind(cluster(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        &[],
        &[],
    )),
    virtual_kind(cluster(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        &[],
        &[],
    )),
    // apiextensions.k8s.io/v1
    cluster(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        &["status"],
    ),
    // policy/v1
    ns(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        &["status"],
    ),
    // scheduling.k8s.io/v1
    cluster(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        &[],
    ),
    // storage.k8s.io/v1
    cluster(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        &[],
    ),
    // node.k8s.io/v1
    cluster(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        &[],
        &[],
    ),
    // autoscaling/v2
    in_all(ns(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        &["status"],
    )),
    // certificates.k8s.io/v1
    cluster(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        &["csr"],
        &["status", "approval"],
    ),
    // admissionregistration.k8s.io/v1 (stored; the API server calls the
    // webhooks they name)
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        &[],
        &[],
    ),
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        &[],
        &[],
    ),
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        &[],
        &["status"],
    ),
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        &[],
        &[],
    ),
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
        &[],
        &[],
    ),
    cluster(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
        &[],
        &[],
    ),
    // apiregistration.k8s.io/v1 (stored only: rk aggregates no API servers)
    cluster(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        &["status"],
    ),
    // flowcontrol.apiserver.k8s.io/v1 (stored only: rk limits requests by
    // count, not by flow)
    cluster(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "flowschemas",
        &[],
        &["status"],
    ),
    cluster(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "prioritylevelconfigurations",
        &[],
        &["status"],
    ),
    // storage.k8s.io/v1, the CSI kinds (stored for the drivers that use them)
    cluster("storage.k8s.io", "v1", "CSIDriver", "csidrivers", &[], &[]),
    cluster("storage.k8s.io", "v1", "CSINode", "csinodes", &[], &[]),
    ns(
        "storage.k8s.io",
        "v1",
        "CSIStorageCapacity",
        "csistoragecapacities",
        &[],
        &[],
    ),
    cluster(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        &[],
        &["status"],
    ),
    cluster(
        "storage.k8s.io",
        "v1",
        "VolumeAttributesClass",
        "volumeattributesclasses",
        &["vac"],
        &[],
    ),
    // networking.k8s.io/v1, service IP ranges
    cluster(
        "networking.k8s.io",
        "v1",
        "IPAddress",
        "ipaddresses",
        &["ip"],
        &[],
    ),
    cluster(
        "networking.k8s.io",
        "v1",
        "ServiceCIDR",
        "servicecidrs",
        &[],
        &["status"],
    ),
    // resource.k8s.io/v1 (dynamic resource allocation; stored for the
    // drivers that use it)
    cluster(
        "resource.k8s.io",
        "v1",
        "DeviceClass",
        "deviceclasses",
        &[],
        &[],
    ),
    ns(
        "resource.k8s.io",
        "v1",
        "ResourceClaim",
        "resourceclaims",
        &[],
        &["status"],
    ),
    ns(
        "resource.k8s.io",
        "v1",
        "ResourceClaimTemplate",
        "resourceclaimtemplates",
        &[],
        &[],
    ),
    cluster(
        "resource.k8s.io",
        "v1",
        "ResourceSlice",
        "resourceslices",
        &[],
        &[],
    ),
    // metrics.k8s.io/v1beta1 (computed from the kubelets' usage)
    computed_kind(cluster(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        &[],
        &[],
    )),
    computed_kind(ns(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        &[],
        &[],
    )),
];

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// The catalogue of every built-in kind rk serves.
    pub fn builtin() -> Self {
        let mut cat = Self::new();
        for s in BUILTINS {
            let verbs: &[&str] = if s.stored {
                STANDARD_VERBS
            } else if s.read_only {
                READ_ONLY_VERBS
            } else {
                CREATE_ONLY_VERBS
            };
            let info = ResourceInfo {
                group: s.group.to_string(),
                version: s.version.to_string(),
                kind: s.kind.to_string(),
                plural: s.plural.to_string(),
                singular: s.kind.to_ascii_lowercase(),
                short_names: s.short.iter().map(|x| x.to_string()).collect(),
                categories: if s.all {
                    vec!["all".to_string()]
                } else {
                    Vec::new()
                },
                scope: s.scope,
                verbs: verbs.iter().map(|x| x.to_string()).collect(),
                subresources: s.subresources.iter().map(|x| x.to_string()).collect(),
                stored: s.stored,
            };
            cat.entries.insert(
                (
                    info.group.clone(),
                    info.version.clone(),
                    info.plural.clone(),
                ),
                Arc::new(info),
            );
        }
        cat.reindex();
        cat
    }

    fn reindex(&mut self) {
        let mut index = PathIndex::default();
        for ((g, v, p), info) in &self.entries {
            index
                .entry(g.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(p.clone(), info.clone());
        }
        self.by_path = index;
    }

    /// True if `group` holds built-in kinds (CRDs may not define kinds there).
    /// Asked on every write: a scan of the ~20 distinct groups, not of every
    /// built-in kind.
    pub fn is_builtin_group(group: &str) -> bool {
        static GROUPS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
            let mut groups: Vec<&'static str> = BUILTINS.iter().map(|s| s.group).collect();
            groups.sort_unstable();
            groups.dedup();
            groups
        });
        GROUPS.contains(&group)
    }

    /// Add or replace an entry (a CRD version). Built-in entries cannot be
    /// replaced.
    pub fn insert(&mut self, info: ResourceInfo) -> Result<(), CatalogueError> {
        if Self::is_builtin_group(&info.group) {
            return Err(CatalogueError::BuiltinClash {
                group: info.group,
                plural: info.plural,
            });
        }
        self.entries.insert(
            (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            ),
            Arc::new(info),
        );
        self.reindex();
        Ok(())
    }

    /// Remove every version of `plural.group`; returns how many were removed.
    pub fn remove(&mut self, group: &str, plural: &str) -> usize {
        if Self::is_builtin_group(group) {
            return 0;
        }
        let before = self.entries.len();
        self.entries
            .retain(|(g, _, p), _| !(g == group && p == plural));
        self.reindex();
        before - self.entries.len()
    }

    /// Every entry, ordered by group, version and plural.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.entries.values()
    }

    /// The entry for a group, version and plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.by_path.get(group)?.get(version)?.get(plural).cloned()
    }

    /// The entry for a group, version and kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.entries
            .values()
            .find(|e| e.group == group && e.version == version && e.kind == kind)
            .cloned()
    }

    /// The entry for an `apiVersion` (`v1`, `apps/v1`) and kind.
    pub fn by_api_version_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        self.by_kind(group, version, kind)
    }

    /// Resolve a name as kubectl does: plural, singular, short name or kind
    /// (case-insensitive), optionally qualified by group (`deployments.apps`) or
    /// by version and group (`deployments.v1.apps`). The core group and then
    /// upstream's group order win ties.
    pub fn resolve(&self, name: &str) -> Option<Arc<ResourceInfo>> {
        let lower = name.to_ascii_lowercase();
        let mut candidates: Vec<&Arc<ResourceInfo>> = Vec::new();
        for e in self.entries.values() {
            let names = std::iter::once(e.plural.as_str())
                .chain(std::iter::once(e.singular.as_str()))
                .chain(e.short_names.iter().map(String::as_str));
            for n in names {
                let plain = n == lower || e.kind.eq_ignore_ascii_case(&lower);
                let with_group = !e.group.is_empty() && lower == format!("{n}.{}", e.group);
                let with_version = lower == format!("{n}.{}.{}", e.version, e.group)
                    || (e.group.is_empty() && lower == format!("{n}.{}", e.version));
                if plain || with_group || with_version {
                    candidates.push(e);
                    break;
                }
            }
        }
        candidates.sort_by_key(|e| (group_rank(&e.group), e.group.clone()));
        candidates.first().map(|e| (*e).clone())
    }

    /// Every group with its versions, ordered as upstream discovery orders
    /// them (built-in groups first, in upstream's order; then custom groups by
    /// name). Versions are sorted by Kubernetes version priority, preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
        for e in self.entries.values() {
            let versions = groups
                .entry((group_rank(&e.group), e.group.clone()))
                .or_default();
            if !versions.contains(&e.version) {
                versions.push(e.version.clone());
            }
        }
        groups
            .into_iter()
            .map(|((_, g), mut v)| {
                v.sort_by(|a, b| compare_kube_versions(b, a));
                (g, v)
            })
            .collect()
    }

    /// Entries served at one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.entries
            .values()
            .filter(|e| e.group == group && e.version == version)
            .cloned()
            .collect()
    }
}

fn group_rank(group: &str) -> usize {
    BUILTIN_GROUP_ORDER
        .iter()
        .position(|g| *g == group)
        .unwrap_or(BUILTIN_GROUP_ORDER.len())
}

/// Split `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Order two version strings as Kubernetes does (`v2` > `v1` > `v1beta2` >
/// `v1beta1` > `v1alpha1` > anything not of that form, which sorts by name).
pub fn compare_kube_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (stage, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        let minor: u64 = num.parse().ok()?;
        Some((major, stage, minor))
    }
    match (parse(a), parse(b)) {
        (Some((ma, sa, na)), Some((mb, sb, nb))) => (sa, ma, na).cmp(&(sb, mb, nb)),
        (Some(_), None) => std::cmp::Ordering::Greater,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (None, None) => b.cmp(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_has_every_listed_kind() {
        let cat = Catalogue::builtin();
        for (api_version, kind) in [
            ("v1", "Pod"),
            ("v1", "Node"),
            ("v1", "Namespace"),
            ("v1", "Service"),
            ("v1", "Endpoints"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Event"),
            ("v1", "ReplicationController"),
            ("v1", "ResourceQuota"),
            ("v1", "LimitRange"),
            ("v1", "PersistentVolume"),
            ("v1", "PersistentVolumeClaim"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "DaemonSet"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "ControllerRevision"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("coordination.k8s.io/v1", "Lease"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("events.k8s.io/v1", "Event"),
            ("networking.k8s.io/v1", "Ingress"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("policy/v1", "PodDisruptionBudget"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
        ] {
            assert!(
                cat.by_api_version_kind(api_version, kind).is_some(),
                "{api_version} {kind}"
            );
        }
    }

    #[test]
    fn short_names_resolve_as_kubectl_does() {
        let cat = Catalogue::builtin();
        for (name, plural, group) in [
            ("po", "pods", ""),
            ("pod", "pods", ""),
            ("Pods", "pods", ""),
            ("deploy", "deployments", "apps"),
            ("rs", "replicasets", "apps"),
            ("ds", "daemonsets", "apps"),
            ("sts", "statefulsets", "apps"),
            ("svc", "services", ""),
            ("cm", "configmaps", ""),
            ("ns", "namespaces", ""),
            ("no", "nodes", ""),
            ("crd", "customresourcedefinitions", "apiextensions.k8s.io"),
            ("deployments.apps", "deployments", "apps"),
            ("deployments.v1.apps", "deployments", "apps"),
            ("pdb", "poddisruptionbudgets", "policy"),
            ("pc", "priorityclasses", "scheduling.k8s.io"),
        ] {
            let e = cat
                .resolve(name)
                .unwrap_or_else(|| panic!("{name} unresolved"));
            assert_eq!(
                (e.plural.as_str(), e.group.as_str()),
                (plural, group),
                "{name}"
            );
        }
        assert!(cat.resolve("nosuchthing").is_none());
    }

    #[test]
    fn core_events_win_over_events_k8s_io_for_bare_name() {
        let cat = Catalogue::builtin();
        assert_eq!(cat.resolve("events").unwrap().group, "");
        assert_eq!(
            cat.resolve("events.events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
    }

    #[test]
    fn storage_keys_follow_kube_apiserver_layout() {
        let cat = Catalogue::builtin();
        let pods = cat.get("", "v1", "pods").unwrap();
        assert_eq!(
            pods.storage_key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = cat.get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.storage_key(None, "n1"), "/registry/minions/n1");
        let deploy = cat.get("apps", "v1", "deployments").unwrap();
        assert_eq!(
            deploy.storage_key(Some("a"), "b"),
            "/registry/deployments/a/b"
        );
    }

    #[test]
    fn custom_resources_are_added_and_removed_at_run_time() {
        let mut cat = Catalogue::builtin();
        let info = ResourceInfo {
            group: "example.com".into(),
            version: "v1".into(),
            kind: "WebApp".into(),
            plural: "webapps".into(),
            singular: "webapp".into(),
            short_names: vec!["wa".into()],
            categories: vec![],
            scope: Scope::Namespaced,
            verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
            subresources: vec!["status".into(), "scale".into()],
            stored: true,
        };
        cat.insert(info.clone()).unwrap();
        let e = cat.resolve("wa").unwrap();
        assert_eq!(
            e.storage_key(Some("ns"), "x"),
            "/registry/example.com/webapps/ns/x"
        );
        assert!(cat.groups().iter().any(|(g, _)| g == "example.com"));
        assert_eq!(cat.remove("example.com", "webapps"), 1);
        assert!(cat.resolve("wa").is_none());
    }

    #[test]
    fn builtin_groups_cannot_be_taken_by_custom_resources() {
        let mut cat = Catalogue::builtin();
        let mut info = (*cat.get("apps", "v1", "deployments").unwrap()).clone();
        info.plural = "others".into();
        assert!(matches!(
            cat.insert(info),
            Err(CatalogueError::BuiltinClash { .. })
        ));
    }

    #[test]
    fn groups_list_core_first_and_prefer_newest_stable_version() {
        let mut cat = Catalogue::builtin();
        for v in ["v1beta1", "v1", "v2alpha1"] {
            cat.insert(ResourceInfo {
                group: "x.io".into(),
                version: v.into(),
                kind: "Thing".into(),
                plural: "things".into(),
                singular: "thing".into(),
                short_names: vec![],
                categories: vec![],
                scope: Scope::Cluster,
                verbs: vec![],
                subresources: vec![],
                stored: true,
            })
            .unwrap();
        }
        let groups = cat.groups();
        assert_eq!(groups[0].0, "");
        let x = groups.iter().find(|(g, _)| g == "x.io").unwrap();
        assert_eq!(x.1, vec!["v1", "v1beta1", "v2alpha1"]);
    }

    #[test]
    fn version_priority_matches_upstream() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_kube_versions("v2", "v1"), Greater);
        assert_eq!(compare_kube_versions("v1", "v2beta1"), Greater);
        assert_eq!(compare_kube_versions("v1beta2", "v1beta1"), Greater);
        assert_eq!(compare_kube_versions("v1beta1", "v1alpha3"), Greater);
        assert_eq!(compare_kube_versions("v1alpha1", "foo"), Greater);
    }
}
