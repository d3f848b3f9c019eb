//! Fields Go declares as non-pointer scalars tagged `omitempty`.
//!
//! Go's protobuf marshaller writes every non-pointer field, so a `false` or
//! `0` in such a field arrives in a protobuf body even though the client
//! never set it — the JSON encoding of the same object would have left it
//! out. Pointer fields (`*bool`, `*int32`) are written only when set, so a
//! zero in them is meant and kept. The table lists, per OpenAPI definition,
//! the JSON names of the first kind; it was generated from the `types.go`
//! of `k8s.io/api` (the versions rk decodes) and of `k8s.io/apimachinery`'s
//! `meta/v1`, matching fields typed `bool`, `int`, `int32`, `int64` or
//! `float64` whose `json` tag has `omitempty`.

/// The fields of the OpenAPI definition `definition` whose zero value
/// means "not set".
pub fn zero_means_unset(definition: &str) -> &'static [&'static str] {
    match definition {
        "io.k8s.api.apps.v1.DaemonSetSpec" => &["minReadySeconds"],
        "io.k8s.api.apps.v1.DaemonSetStatus" => &[
            "observedGeneration",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
        ],
        "io.k8s.api.apps.v1.DeploymentSpec" => &["minReadySeconds", "paused"],
        "io.k8s.api.apps.v1.DeploymentStatus" => &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ],
        "io.k8s.api.apps.v1.ReplicaSetSpec" => &["minReadySeconds"],
        "io.k8s.api.apps.v1.ReplicaSetStatus" => &[
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
        "io.k8s.api.apps.v1.StatefulSetSpec" => &["minReadySeconds"],
        "io.k8s.api.apps.v1.StatefulSetStatus" => &[
            "observedGeneration",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
        ],
        "io.k8s.api.authentication.v1.TokenReviewStatus" => &["authenticated"],
        "io.k8s.api.authorization.v1.SubjectAccessReviewStatus" => &["denied"],
        "io.k8s.api.autoscaling.v1.ScaleSpec" => &["replicas"],
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus" => &["currentReplicas"],
        "io.k8s.api.batch.v1.JobStatus" => &["active", "succeeded", "failed"],
        "io.k8s.api.core.v1.AWSElasticBlockStoreVolumeSource" => &["partition", "readOnly"],
        "io.k8s.api.core.v1.AzureFilePersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.AzureFileVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.CSIPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.CephFSPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.CephFSVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.CinderPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.CinderVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.Container" => &["stdin", "stdinOnce", "tty"],
        "io.k8s.api.core.v1.ContainerImage" => &["sizeBytes"],
        "io.k8s.api.core.v1.ContainerPort" => &["hostPort"],
        "io.k8s.api.core.v1.ContainerStateTerminated" => &["signal"],
        "io.k8s.api.core.v1.EphemeralContainer" => &["stdin", "stdinOnce", "tty"],
        "io.k8s.api.core.v1.EphemeralContainerCommon" => &["stdin", "stdinOnce", "tty"],
        "io.k8s.api.core.v1.Event" => &["count"],
        "io.k8s.api.core.v1.EventSeries" => &["count"],
        "io.k8s.api.core.v1.FCVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.FlexPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.FlexVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.GCEPersistentDiskVolumeSource" => &["partition", "readOnly"],
        "io.k8s.api.core.v1.GlusterfsPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.GlusterfsVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.ISCSIPersistentVolumeSource" => {
            &["readOnly", "chapAuthDiscovery", "chapAuthSession"]
        }
        "io.k8s.api.core.v1.ISCSIVolumeSource" => {
            &["readOnly", "chapAuthDiscovery", "chapAuthSession"]
        }
        "io.k8s.api.core.v1.NFSVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.NodeSpec" => &["unschedulable"],
        "io.k8s.api.core.v1.PersistentVolumeClaimVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.PodAttachOptions" => &["stdin", "stdout", "stderr", "tty"],
        "io.k8s.api.core.v1.PodCondition" => &["observedGeneration"],
        "io.k8s.api.core.v1.PodExecOptions" => &["stdin", "stdout", "stderr", "tty"],
        "io.k8s.api.core.v1.PodLogOptions" => &[
            "follow",
            "previous",
            "timestamps",
            "insecureSkipTLSVerifyBackend",
        ],
        "io.k8s.api.core.v1.PodSpec" => &["hostNetwork", "hostPID", "hostIPC"],
        "io.k8s.api.core.v1.PodStatus" => &["observedGeneration"],
        "io.k8s.api.core.v1.PortworxVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.Probe" => &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
        "io.k8s.api.core.v1.QuobyteVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.RBDPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.RBDVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.ReplicationControllerSpec" => &["minReadySeconds"],
        "io.k8s.api.core.v1.ReplicationControllerStatus" => &[
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
        ],
        "io.k8s.api.core.v1.ScaleIOPersistentVolumeSource" => &["sslEnabled", "readOnly"],
        "io.k8s.api.core.v1.ScaleIOVolumeSource" => &["sslEnabled", "readOnly"],
        "io.k8s.api.core.v1.ServicePort" => &["nodePort"],
        "io.k8s.api.core.v1.ServiceSpec" => &["healthCheckNodePort", "publishNotReadyAddresses"],
        "io.k8s.api.core.v1.StorageOSPersistentVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.StorageOSVolumeSource" => &["readOnly"],
        "io.k8s.api.core.v1.VolumeMount" => &["readOnly"],
        "io.k8s.api.core.v1.VolumeMountStatus" => &["readOnly"],
        "io.k8s.api.events.v1.Event" => &["deprecatedCount"],
        "io.k8s.api.networking.v1.ServiceBackendPort" => &["number"],
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus" => &["observedGeneration"],
        "io.k8s.api.scheduling.v1.PriorityClass" => &["globalDefault"],
        "io.k8s.apimachinery.pkg.apis.meta.v1.Condition" => &["observedGeneration"],
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListOptions" => {
            &["watch", "allowWatchBookmarks", "limit"]
        }
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" => &["generation"],
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status" => &["code"],
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails" => &["retryAfterSeconds"],
        _ => &[],
    }
}
