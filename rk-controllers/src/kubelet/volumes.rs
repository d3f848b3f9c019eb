//! Volumes, materialized as directories under the pod's directory
//! (`<pod dir>/volumes/<name>`): `emptyDir`, `hostPath` (the host path
//! itself), `configMap`, `secret`, `downwardAPI` and `projected` (their
//! ConfigMap, Secret and downward-API sources).
//!
//! # How a container sees its mounts
//!
//! When the kubelet runs as root, the `process` runtime starts each
//! container with volume mounts in a private mount namespace where every
//! `volumeMount` is bind-mounted at its `mountPath` ([`mounts`]).
//!
//! Either way, every `volumeMount` is also announced in the container's
//! environment, which is how containers find their volumes when the
//! kubelet is not root:
//!
//! - `RK_VOLUME_<NAME>`: the directory of the volume (name upper-cased,
//!   `-` and `.` as `_`);
//! - `RK_MOUNT_<PATH>`: what is mounted at `mountPath` (subPath applied),
//!   the path upper-cased with `/`, `-` and `.` as `_` (`/etc/config` →
//!   `RK_MOUNT_ETC_CONFIG`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::env::{PodNetwork, Sources, field_value, resource_value};
use super::runtime::Mount;

/// A volume ready to be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The volume's name.
    pub name: String,
    /// Its directory on the host.
    pub path: PathBuf,
}

/// The directory of volume `name` of the pod whose directory is `pod_dir`.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

fn write_file(dir: &Path, rel: &str, data: &[u8], mode: Option<i32>) -> Result<(), String> {
    if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
        return Err(format!("invalid path {rel:?} in volume items"));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode((mode as u32) & 0o777);
        let _ = std::fs::set_permissions(&path, perms);
    }
    Ok(())
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    what: &str,
) -> Result<(), String> {
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    return Err(format!(
                        "configuration key {:?} not found in {what}",
                        item.key
                    ));
                };
                write_file(dir, &item.path, value, item.mode.or(default_mode))?;
            }
        }
        _ => {
            for (k, v) in data {
                write_file(dir, k, v, default_mode)?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    dir: &Path,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    net: &PodNetwork,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, net)?
        } else if let Some(r) = &item.resource_field_ref {
            let containers: Vec<&Container> =
                pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
            let name = r.container_name.as_deref().unwrap_or_default();
            let container = containers
                .iter()
                .find(|c| c.name == name)
                .or(containers.first())
                .ok_or_else(|| "the pod has no containers".to_owned())?;
            resource_value(container, &r.resource, r.divisor.as_ref(), net)?
        } else {
            continue;
        };
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            item.mode.or(default_mode),
        )?;
    }
    Ok(())
}

async fn source_data(
    sources: &mut Sources,
    secret: bool,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let data = if secret {
        sources.secret(name).await?
    } else {
        sources.config_map(name).await?
    };
    match data {
        Some(d) => Ok(Some(d)),
        None if optional => Ok(None),
        None if secret => Err(format!("secret \"{name}\" not found")),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

/// Materialize one volume; returns its host directory.
async fn prepare_one(
    pod_dir: &Path,
    pod: &Pod,
    volume: &Volume,
    net: &PodNetwork,
    sources: &mut Sources,
) -> Result<PathBuf, String> {
    if let Some(hp) = &volume.host_path {
        let path = PathBuf::from(&hp.path);
        match hp.type_.as_deref().unwrap_or_default() {
            "DirectoryOrCreate" => std::fs::create_dir_all(&path)
                .map_err(|e| format!("creating hostPath {}: {e}", path.display()))?,
            "Directory" if !path.is_dir() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    hp.path
                ));
            }
            "File" if !path.is_file() => {
                return Err(format!(
                    "hostPath type check failed: {} is not a file",
                    hp.path
                ));
            }
            _ => {}
        }
        return Ok(path);
    }
    let dir = volume_dir(pod_dir, &volume.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Some(cm) = &volume.config_map {
        if let Some(data) = source_data(sources, false, &cm.name, cm.optional == Some(true)).await?
        {
            write_keys(
                &dir,
                &data,
                cm.items.as_ref(),
                cm.default_mode,
                &format!("ConfigMap {}", cm.name),
            )?;
        }
    } else if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        if let Some(data) = source_data(sources, true, &name, s.optional == Some(true)).await? {
            write_keys(
                &dir,
                &data,
                s.items.as_ref(),
                s.default_mode.or(Some(0o644)),
                &format!("Secret {name}"),
            )?;
        }
    } else if let Some(d) = &volume.downward_api {
        write_downward(
            &dir,
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
            net,
        )?;
    } else if let Some(p) = &volume.projected {
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                if let Some(data) =
                    source_data(sources, false, &cm.name, cm.optional == Some(true)).await?
                {
                    write_keys(
                        &dir,
                        &data,
                        cm.items.as_ref(),
                        p.default_mode,
                        &format!("ConfigMap {}", cm.name),
                    )?;
                }
            } else if let Some(s) = &source.secret {
                if let Some(data) =
                    source_data(sources, true, &s.name, s.optional == Some(true)).await?
                {
                    write_keys(
                        &dir,
                        &data,
                        s.items.as_ref(),
                        p.default_mode,
                        &format!("Secret {}", s.name),
                    )?;
                }
            } else if let Some(d) = &source.downward_api {
                write_downward(
                    &dir,
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    p.default_mode,
                    net,
                )?;
            }
        }
    }
    // emptyDir and kinds this runtime does not know are plain directories.
    Ok(dir)
}

/// Materialize every volume of the pod.
pub async fn prepare(
    pod_dir: &Path,
    pod: &Pod,
    net: &PodNetwork,
    sources: &mut Sources,
) -> Result<Vec<Prepared>, String> {
    let mut out = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(pod_dir, pod, volume, net, sources)
            .await
            .map_err(|e| format!("volume {:?}: {e}", volume.name))?;
        out.push(Prepared {
            name: volume.name.clone(),
            path,
        });
    }
    Ok(out)
}

fn env_name(prefix: &str, raw: &str) -> String {
    let body: String = raw
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{body}")
}

/// The container's volume mounts: host source (subPath applied) and
/// `mountPath`.
pub fn mounts(container: &Container, volumes: &[Prepared]) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            return Err(format!(
                "volume {:?} in volumeMounts is not defined",
                mount.name
            ));
        };
        let mut source = volume.path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
                return Err(format!("invalid subPath {sub:?}"));
            }
            source = source.join(sub);
        }
        out.push(Mount {
            source,
            target: PathBuf::from(&mount.mount_path),
            read_only: mount.read_only == Some(true),
        });
    }
    Ok(out)
}

/// The environment variables that tell a container where its mounts are
/// (see the module documentation).
pub fn mount_env(
    container: &Container,
    volumes: &[Prepared],
) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            return Err(format!(
                "volume {:?} in volumeMounts is not defined",
                mount.name
            ));
        };
        let mut source = volume.path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
                return Err(format!("invalid subPath {sub:?}"));
            }
            source = source.join(sub);
        }
        env.push((
            env_name("RK_VOLUME_", &volume.name),
            volume.path.display().to_string(),
        ));
        env.push((
            env_name("RK_MOUNT_", &mount.mount_path),
            source.display().to_string(),
        ));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_env_names_are_shell_friendly() {
        assert_eq!(
            env_name("RK_MOUNT_", "/etc/my-config.d"),
            "RK_MOUNT_ETC_MY_CONFIG_D"
        );
        assert_eq!(env_name("RK_VOLUME_", "data"), "RK_VOLUME_DATA");
    }

    #[test]
    fn item_paths_cannot_escape_the_volume() {
        let dir = std::env::temp_dir();
        assert!(write_file(&dir, "../x", b"", None).is_err());
        assert!(write_file(&dir, "/etc/x", b"", None).is_err());
    }
}
