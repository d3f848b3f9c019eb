"""The official Kubernetes Python client against an rk API server.

Usage: python3 client_flows.py KUBECONFIG
Exits non-zero with a message on the first failed expectation.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def expect(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    names = [n.metadata.name for n in core.list_namespace().items]
    expect("kube-system" in names, f"system namespaces listed: {names}")

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    cm = core.create_namespaced_config_map(
        "py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "py"}), data={"a": "1"})
    )
    expect(cm.metadata.resource_version, "created object has a resourceVersion")
    expect(cm.metadata.creation_timestamp is not None, "creationTimestamp parsed as a datetime")

    # A watch from the list's resourceVersion sees later changes.
    listed = core.list_namespaced_config_map("py", label_selector="app=py")
    expect(len(listed.items) == 1, "label selector list")
    seen = []

    def watch_changes():
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "py",
                           resource_version=listed.metadata.resource_version, timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watch_changes)
    t.start()
    core.patch_namespaced_config_map("settings", "py", {"data": {"b": "2"}})
    core.delete_namespaced_config_map("settings", "py")
    t.join(15)
    expect(("MODIFIED", "settings") in seen and ("DELETED", "settings") in seen, f"watch events: {seen}")

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", command=["sleep", "9"])]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment("py", dep)
    expect(created.spec.strategy is not None and created.spec.strategy.type == "RollingUpdate", "deployment defaults")
    scale = apps.read_namespaced_deployment_scale("web", "py")
    expect(scale.spec.replicas == 2, "scale subresource")
    apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 3}})
    expect(apps.read_namespaced_deployment("web", "py").spec.replicas == 3, "scale patch applied")

    try:
        core.read_namespaced_config_map("missing", "py")
        expect(False, "missing object raises")
    except ApiException as e:
        expect(e.status == 404, f"404 for a missing object, got {e.status}")

    try:
        bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name"))
        core.create_namespaced_config_map("py", bad)
        expect(False, "invalid name refused")
    except ApiException as e:
        expect(e.status == 422, f"422 for an invalid name, got {e.status}")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
