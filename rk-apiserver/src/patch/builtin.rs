//! The merge rules of the built-in kinds: upstream's Go struct tags
//! (`patchStrategy`, `patchMergeKey`) and list markers (`+listType`,
//! `+listMapKey`, `+structType=atomic`, `+mapType=atomic`) from
//! k8s.io/api `core/v1`, `apps/v1`, `batch/v1`, `policy/v1` and
//! k8s.io/apimachinery `meta/v1`, as a small graph of Go types. Only fields
//! whose merge behaviour differs from the default are listed.

/// The Go type at the root of a built-in kind; kinds without special
/// fields beyond their metadata share one.
pub(super) fn root_type(group: &str, kind: &str) -> &'static TypeDef {
    match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") => &REPLICATION_CONTROLLER,
        ("", "Service") => &SERVICE,
        ("", "Node") => &NODE,
        ("", "Namespace") => &NAMESPACE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "PersistentVolumeClaim") => &PERSISTENT_VOLUME_CLAIM,
        ("", "ComponentStatus") => &COMPONENT_STATUS,
        ("apps" | "extensions", "Deployment") => &DEPLOYMENT,
        ("apps" | "extensions", "ReplicaSet") => &REPLICA_SET,
        ("apps" | "extensions", "DaemonSet") => &DAEMON_SET,
        ("apps", "StatefulSet") => &STATEFUL_SET,
        ("batch", "Job") => &JOB,
        ("batch", "CronJob") => &CRON_JOB,
        ("policy", "PodDisruptionBudget") => &POD_DISRUPTION_BUDGET,
        _ => &OBJECT,
    }
}

/// A Go struct: only its fields with non-default merge behaviour.
#[derive(Debug)]
pub(crate) struct TypeDef {
    pub(super) name: &'static str,
    pub(super) fields: &'static [(&'static str, Field)],
}

#[derive(Debug)]
pub(super) enum Field {
    /// A nested struct of the given type, always serialized (a Go value,
    /// not a pointer).
    Struct(&'static TypeDef),
    /// A nested struct behind a Go pointer: absent unless set.
    Pointer(&'static TypeDef),
    /// `+structType=atomic` / `+mapType=atomic`: replaced as a whole.
    Atomic,
    /// A list with merge rules.
    List(ListDef),
}

/// A list field: its strategic-merge rule, its apply rule and its items.
#[derive(Debug)]
pub(crate) struct ListDef {
    pub(super) smp: Smp,
    pub(super) ssa: Ssa,
    pub(super) item: Item,
}

#[derive(Debug)]
pub(super) enum Smp {
    /// No `patchStrategy`: the patch's list replaces the original.
    Replace,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`.
    MergeKey(&'static str),
    /// `patchStrategy:"merge"` on a list of scalars.
    MergePrimitive,
}

#[derive(Debug)]
pub(super) enum Ssa {
    Atomic,
    Set,
    /// `+listType=map`, the keys with their defaults.
    Map(&'static [(&'static str, Option<&'static str>)]),
}

#[derive(Debug)]
pub(super) enum Item {
    Scalar,
    Struct(&'static TypeDef),
    Atomic,
}

const fn keyed(
    smp_key: &'static str,
    ssa_keys: &'static [(&'static str, Option<&'static str>)],
    item: Item,
) -> Field {
    Field::List(ListDef {
        smp: Smp::MergeKey(smp_key),
        ssa: Ssa::Map(ssa_keys),
        item,
    })
}

/// `patchStrategy:"merge" patchMergeKey:"<key>"` with `+listType=map
/// +listMapKey=<key>`: the common case.
const fn by(key: &'static str, ssa_keys: &'static [(&'static str, Option<&'static str>)]) -> Field {
    keyed(key, ssa_keys, Item::Scalar)
}

/// Conditions: merged by `type` in both worlds.
const CONDITIONS: Field = by("type", &[("type", None)]);
/// Conditions of a Job: merged by `type` for SMP but `+listType=atomic`.
const ATOMIC_CONDITIONS: Field = Field::List(ListDef {
    smp: Smp::MergeKey("type"),
    ssa: Ssa::Atomic,
    item: Item::Scalar,
});

static OBJECT_META: TypeDef = TypeDef {
    name: "ObjectMeta",
    fields: &[
        (
            "ownerReferences",
            keyed("uid", &[("uid", None)], Item::Atomic),
        ),
        (
            "finalizers",
            Field::List(ListDef {
                smp: Smp::MergePrimitive,
                ssa: Ssa::Set,
                item: Item::Scalar,
            }),
        ),
    ],
};

/// Any built-in kind without special fields beyond its metadata.
static OBJECT: TypeDef = TypeDef {
    name: "Object",
    fields: &[("metadata", Field::Struct(&OBJECT_META))],
};

static ENV_VAR_SOURCE: TypeDef = TypeDef {
    name: "EnvVarSource",
    fields: &[
        ("configMapKeyRef", Field::Atomic),
        ("secretKeyRef", Field::Atomic),
        ("fieldRef", Field::Atomic),
        ("resourceFieldRef", Field::Atomic),
        ("fileKeyRef", Field::Atomic),
    ],
};

static ENV_VAR: TypeDef = TypeDef {
    name: "EnvVar",
    fields: &[("valueFrom", Field::Pointer(&ENV_VAR_SOURCE))],
};

static RESOURCE_REQUIREMENTS: TypeDef = TypeDef {
    name: "ResourceRequirements",
    fields: &[(
        "claims",
        Field::List(ListDef {
            smp: Smp::Replace,
            ssa: Ssa::Map(&[("name", None)]),
            item: Item::Scalar,
        }),
    )],
};

static CONTAINER: TypeDef = TypeDef {
    name: "Container",
    fields: &[
        (
            "ports",
            by(
                "containerPort",
                &[("containerPort", None), ("protocol", Some("TCP"))],
            ),
        ),
        (
            "env",
            keyed("name", &[("name", None)], Item::Struct(&ENV_VAR)),
        ),
        ("volumeMounts", by("mountPath", &[("mountPath", None)])),
        ("volumeDevices", by("devicePath", &[("devicePath", None)])),
        ("resources", Field::Struct(&RESOURCE_REQUIREMENTS)),
    ],
};

static POD_SPEC: TypeDef = TypeDef {
    name: "PodSpec",
    fields: &[
        ("volumes", by("name", &[("name", None)])),
        (
            "initContainers",
            keyed("name", &[("name", None)], Item::Struct(&CONTAINER)),
        ),
        (
            "containers",
            keyed("name", &[("name", None)], Item::Struct(&CONTAINER)),
        ),
        (
            "ephemeralContainers",
            keyed("name", &[("name", None)], Item::Struct(&CONTAINER)),
        ),
        (
            "imagePullSecrets",
            keyed("name", &[("name", None)], Item::Atomic),
        ),
        ("hostAliases", by("ip", &[("ip", None)])),
        (
            "topologySpreadConstraints",
            by(
                "topologyKey",
                &[("topologyKey", None), ("whenUnsatisfiable", None)],
            ),
        ),
        ("schedulingGates", by("name", &[("name", None)])),
        (
            "resourceClaims",
            keyed("name", &[("name", None)], Item::Atomic),
        ),
        ("nodeSelector", Field::Atomic),
    ],
};

static POD_STATUS: TypeDef = TypeDef {
    name: "PodStatus",
    fields: &[
        ("conditions", CONDITIONS),
        ("podIPs", by("ip", &[("ip", None)])),
        (
            "hostIPs",
            Field::List(ListDef {
                smp: Smp::MergeKey("ip"),
                ssa: Ssa::Atomic,
                item: Item::Scalar,
            }),
        ),
        ("resourceClaimStatuses", by("name", &[("name", None)])),
    ],
};

static POD: TypeDef = TypeDef {
    name: "Pod",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&POD_SPEC)),
        ("status", Field::Struct(&POD_STATUS)),
    ],
};

static POD_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "PodTemplateSpec",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&POD_SPEC)),
    ],
};

static POD_TEMPLATE: TypeDef = TypeDef {
    name: "PodTemplate",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("template", Field::Struct(&POD_TEMPLATE_SPEC)),
    ],
};

/// A workload spec: a pod template and a `LabelSelector` (atomic).
static WORKLOAD_SPEC: TypeDef = TypeDef {
    name: "WorkloadSpec",
    fields: &[
        ("selector", Field::Atomic),
        ("template", Field::Struct(&POD_TEMPLATE_SPEC)),
    ],
};

static DEPLOYMENT_SPEC: TypeDef = TypeDef {
    name: "DeploymentSpec",
    fields: &[
        ("selector", Field::Atomic),
        ("template", Field::Struct(&POD_TEMPLATE_SPEC)),
    ],
};

/// A workload status whose conditions merge by `type`.
static CONDITIONS_STATUS: TypeDef = TypeDef {
    name: "ConditionsStatus",
    fields: &[("conditions", CONDITIONS)],
};

static DEPLOYMENT: TypeDef = TypeDef {
    name: "Deployment",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&DEPLOYMENT_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static REPLICA_SET: TypeDef = TypeDef {
    name: "ReplicaSet",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&WORKLOAD_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static DAEMON_SET: TypeDef = TypeDef {
    name: "DaemonSet",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&WORKLOAD_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static STATEFUL_SET: TypeDef = TypeDef {
    name: "StatefulSet",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&WORKLOAD_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static REPLICATION_CONTROLLER_SPEC: TypeDef = TypeDef {
    name: "ReplicationControllerSpec",
    fields: &[
        ("selector", Field::Atomic),
        ("template", Field::Struct(&POD_TEMPLATE_SPEC)),
    ],
};

static REPLICATION_CONTROLLER: TypeDef = TypeDef {
    name: "ReplicationController",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&REPLICATION_CONTROLLER_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static JOB_STATUS: TypeDef = TypeDef {
    name: "JobStatus",
    fields: &[("conditions", ATOMIC_CONDITIONS)],
};

static JOB: TypeDef = TypeDef {
    name: "Job",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&WORKLOAD_SPEC)),
        ("status", Field::Struct(&JOB_STATUS)),
    ],
};

static JOB_TEMPLATE_SPEC: TypeDef = TypeDef {
    name: "JobTemplateSpec",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&WORKLOAD_SPEC)),
    ],
};

static CRON_JOB_SPEC: TypeDef = TypeDef {
    name: "CronJobSpec",
    fields: &[("jobTemplate", Field::Struct(&JOB_TEMPLATE_SPEC))],
};

static CRON_JOB_STATUS: TypeDef = TypeDef {
    name: "CronJobStatus",
    fields: &[("active", Field::Atomic)],
};

static CRON_JOB: TypeDef = TypeDef {
    name: "CronJob",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&CRON_JOB_SPEC)),
        ("status", Field::Struct(&CRON_JOB_STATUS)),
    ],
};

static SERVICE_SPEC: TypeDef = TypeDef {
    name: "ServiceSpec",
    fields: &[
        (
            "ports",
            by("port", &[("port", None), ("protocol", Some("TCP"))]),
        ),
        ("selector", Field::Atomic),
    ],
};

static SERVICE: TypeDef = TypeDef {
    name: "Service",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&SERVICE_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static NODE_SPEC: TypeDef = TypeDef {
    name: "NodeSpec",
    fields: &[(
        "podCIDRs",
        Field::List(ListDef {
            smp: Smp::MergePrimitive,
            ssa: Ssa::Set,
            item: Item::Scalar,
        }),
    )],
};

static NODE_STATUS: TypeDef = TypeDef {
    name: "NodeStatus",
    fields: &[
        ("conditions", CONDITIONS),
        ("addresses", by("type", &[("type", None)])),
    ],
};

static NODE: TypeDef = TypeDef {
    name: "Node",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&NODE_SPEC)),
        ("status", Field::Struct(&NODE_STATUS)),
    ],
};

static NAMESPACE: TypeDef = TypeDef {
    name: "Namespace",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static SERVICE_ACCOUNT: TypeDef = TypeDef {
    name: "ServiceAccount",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("secrets", keyed("name", &[("name", None)], Item::Atomic)),
    ],
};

static PERSISTENT_VOLUME_CLAIM: TypeDef = TypeDef {
    name: "PersistentVolumeClaim",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static COMPONENT_STATUS: TypeDef = TypeDef {
    name: "ComponentStatus",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("conditions", CONDITIONS),
    ],
};

static POD_DISRUPTION_BUDGET: TypeDef = TypeDef {
    name: "PodDisruptionBudget",
    fields: &[
        ("metadata", Field::Struct(&OBJECT_META)),
        ("spec", Field::Struct(&PDB_SPEC)),
        ("status", Field::Struct(&CONDITIONS_STATUS)),
    ],
};

static PDB_SPEC: TypeDef = TypeDef {
    name: "PodDisruptionBudgetSpec",
    fields: &[("selector", Field::Atomic)],
};
