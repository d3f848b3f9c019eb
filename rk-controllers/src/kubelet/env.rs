//! A container's environment: the Service variables, `envFrom`, then `env` (literal values with
//! `$(VAR)` expansion, and `valueFrom` field, resource, ConfigMap and Secret
//! references), plus what the kubelet adds (`POD_IP`, `HOSTNAME`).
//!
//! Errors carry the message upstream shows in a `CreateContainerConfigError`
//! waiting state (`configmap "app" not found`, ...).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Api;
use rk_core::quantity::ParsedQuantity;

/// What the kubelet knows about where the pod runs.
#[derive(Debug, Clone, Default)]
pub struct PodNetwork {
    /// The pod's IP.
    pub pod_ip: String,
    /// The node's IP.
    pub host_ip: String,
    /// The node's allocatable resources (for `resourceFieldRef` without a limit).
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// Replace `$(VAR)` with the value of `VAR` from `vars`; `$$(VAR)` gives a
/// literal `$(VAR)` and references to undefined variables stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch_len = input[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&input[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Fetches ConfigMaps and Secrets once per container start.
pub struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
    service_env: Option<Vec<(String, String)>>,
}

impl Sources {
    /// Lookups in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
            service_env: None,
        }
    }

    /// The Service variables of `pod` ([`super::service_env`]), read once.
    pub async fn service_env(&mut self, pod: &Pod) -> Result<Vec<(String, String)>, String> {
        if self.service_env.is_none() {
            let services = super::service_env::services_for(&self.client, pod).await?;
            self.service_env = Some(super::service_env::variables(&services));
        }
        Ok(self.service_env.clone().unwrap_or_default())
    }

    /// A ConfigMap's data (binary data decoded lossily), `None` if it does not exist.
    pub async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading configmap {name:?}: {e}"))?;
            self.config_maps.insert(name.to_owned(), cm);
        }
        Ok(self
            .config_maps
            .get(name)
            .and_then(|cm| cm.as_ref())
            .map(|cm| {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                for (k, v) in cm.binary_data.iter().flatten() {
                    data.insert(k.clone(), v.0.clone());
                }
                data
            }))
    }

    /// A Secret's data, `None` if it does not exist.
    pub async fn secret(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading secret {name:?}: {e}"))?;
            self.secrets.insert(name.to_owned(), s);
        }
        Ok(self.secrets.get(name).and_then(|s| s.as_ref()).map(|s| {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            for (k, v) in s.string_data.iter().flatten() {
                data.insert(k.clone(), v.clone().into_bytes());
            }
            data
        }))
    }
}

/// The value of a downward-API field path (`metadata.name`,
/// `metadata.labels['app']`, `status.podIP`, ...).
pub fn field_value(pod: &Pod, path: &str, net: &PodNetwork) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_value = |map: Option<&BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = map_value(meta.labels.as_ref(), "metadata.labels") {
        return Ok(v);
    }
    if let Some(v) = map_value(meta.annotations.as_ref(), "metadata.annotations") {
        return Ok(v);
    }
    let render_map = |m: Option<&BTreeMap<String, String>>| {
        m.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{v}\"\n"))
            .collect::<String>()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render_map(meta.labels.as_ref()),
        "metadata.annotations" => render_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => net.host_ip.clone(),
        "status.podIP" | "status.podIPs" => net.pod_ip.clone(),
        other => return Err(format!("unsupported fieldPath {other:?}")),
    })
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`, ...)
/// scaled by its divisor and rounded up; a missing limit is the node's
/// allocatable amount.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    net: &PodNetwork,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {resource:?}")),
    };
    let amount = list.and_then(|l| l.get(name)).or_else(|| {
        (kind == "limits")
            .then(|| net.node_allocatable.get(name))
            .flatten()
    });
    let parse = |q: &Quantity| {
        ParsedQuantity::try_from(q).map_err(|e| format!("invalid quantity {:?}: {e}", q.0))
    };
    let amount = match amount {
        Some(q) => parse(q)?,
        None => ParsedQuantity::zero(),
    };
    let divisor = match divisor {
        Some(q) => parse(q)?,
        None => ParsedQuantity::new(1, rk_core::quantity::Format::DecimalSI),
    };
    let div = divisor.nanos();
    if div <= 0 {
        return Err(format!("invalid divisor for {resource}"));
    }
    let n = amount.nanos();
    let value = (n + div - 1).div_euclid(div);
    // CPU requests round up to at least one unit, as upstream does.
    let value = if name == "cpu" && n > 0 {
        value.max(1)
    } else {
        value
    };
    Ok(value.to_string())
}

/// The container's environment, in order: the Service variables
/// ([`super::service_env`]), `envFrom` sources, then `env`, then the
/// kubelet's own (`POD_IP`, `HOSTNAME` unless set).
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    net: &PodNetwork,
    sources: &mut Sources,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        vars.insert(k.clone(), v.clone());
        match env.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    };
    for (k, v) in sources.service_env(pod).await? {
        set(&mut env, k, v);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, what, name) = if let Some(r) = &from.config_map_ref {
            let data = sources.config_map(&r.name).await?;
            (data, r.optional == Some(true), "configmap", r.name.clone())
        } else if let Some(r) = &from.secret_ref {
            let data = sources.secret(&r.name).await?;
            (data, r.optional == Some(true), "secret", r.name.clone())
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(format!("{what} \"{name}\" not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let current: HashMap<String, String> = env.iter().cloned().collect();
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), &current),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, net)?
                } else if let Some(r) = &from.resource_field_ref {
                    let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(name) => pod
                            .spec
                            .iter()
                            .flat_map(|s| s.containers.iter())
                            .find(|c| c.name == name)
                            .ok_or_else(|| format!("container {name:?} not found"))?,
                        None => container,
                    };
                    resource_value(target, &r.resource, r.divisor.as_ref(), net)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.config_map(&r.name).await? {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {}/{}",
                                    r.key, sources.namespace, r.name
                                ));
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("configmap \"{}\" not found", r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.secret(&r.name).await? {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => String::from_utf8_lossy(v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {}/{}",
                                    r.key, sources.namespace, r.name
                                ));
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("secret \"{}\" not found", r.name)),
                    }
                } else {
                    continue;
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    if !env.iter().any(|(k, _)| k == "POD_IP") {
        set(&mut env, "POD_IP".to_owned(), net.pod_ip.clone());
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        let name = pod.metadata.name.clone().unwrap_or_default();
        set(&mut env, "HOSTNAME".to_owned(), name);
    }
    Ok(env)
}

/// `command` + `args` with `$(VAR)` expanded from `env`.
pub fn argv(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|s| expand(s, &vars))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream_rules() {
        let vars = HashMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("é$(A)", &vars), "é1");
    }

    #[test]
    fn resource_values_divide_and_round_up() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}
        }))
        .unwrap();
        let net = PodNetwork::default();
        assert_eq!(
            resource_value(&container, "limits.cpu", None, &net).unwrap(),
            "1"
        );
        assert_eq!(
            resource_value(&container, "limits.cpu", Some(&Quantity("1m".into())), &net).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(
                &container,
                "limits.memory",
                Some(&Quantity("1Mi".into())),
                &net
            )
            .unwrap(),
            "64"
        );
    }
}
