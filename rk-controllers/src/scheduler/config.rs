//! The configuration file, in the shape of upstream's
//! `KubeSchedulerConfiguration` (`kubescheduler.config.k8s.io/v1`): profiles
//! (one per `schedulerName`), plugins enabled and disabled per extension
//! point (`multiPoint` or a named point; `"*"` disables every default),
//! plugin arguments (`pluginConfig`), `percentageOfNodesToScore` and
//! `parallelism`. YAML or JSON.
//!
//! rk enables a plugin at every extension point it implements; the per-point
//! lists are read for enabling, disabling and Score weights.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use super::DEFAULT_SCHEDULER_NAME;
use super::framework::{Framework, Handle};
use super::plugins;

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be parsed.
    #[error("parsing the scheduler configuration: {0}")]
    Parse(String),
    /// A plugin name is unknown.
    #[error("profile {profile}: unknown plugin {plugin:?}")]
    UnknownPlugin {
        /// The profile.
        profile: String,
        /// The plugin.
        plugin: String,
    },
    /// A plugin rejected its arguments.
    #[error("profile {profile}: {message}")]
    Args {
        /// The profile.
        profile: String,
        /// What is wrong.
        message: String,
    },
    /// Something else is invalid.
    #[error("invalid scheduler configuration: {0}")]
    Invalid(String),
}

/// `KubeSchedulerConfiguration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerConfiguration {
    /// `apiVersion` (informational).
    #[serde(default)]
    pub api_version: Option<String>,
    /// `kind` (informational).
    #[serde(default)]
    pub kind: Option<String>,
    /// Node filtering parallelism (rk filters sequentially; accepted for
    /// compatibility).
    #[serde(default)]
    pub parallelism: Option<i32>,
    /// Global `percentageOfNodesToScore` (0 or unset: adaptive).
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// The profiles; none means one default profile.
    #[serde(default)]
    pub profiles: Vec<Profile>,
}

/// One profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The `spec.schedulerName` it serves (default `default-scheduler`).
    #[serde(default)]
    pub scheduler_name: Option<String>,
    /// Per-profile `percentageOfNodesToScore`.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugins enabled and disabled per extension point.
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Plugin arguments.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// `plugins`: per extension point, enabled and disabled plugin lists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    /// Every extension point at once.
    #[serde(default)]
    pub multi_point: PluginSet,
    /// The named extension points.
    #[serde(flatten)]
    pub points: BTreeMap<String, PluginSet>,
}

/// Enabled and disabled plugins.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginSet {
    /// Plugins to enable (with optional Score weight).
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Plugins to disable (`*`: all defaults).
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// A plugin name with an optional weight.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginRef {
    /// The plugin's name.
    pub name: String,
    /// Score weight.
    #[serde(default)]
    pub weight: Option<i64>,
}

/// `pluginConfig` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginConfig {
    /// The plugin's name.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
}

impl SchedulerConfiguration {
    /// Parses a YAML or JSON document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// The global `percentageOfNodesToScore` (0: adaptive).
    pub fn percentage(&self) -> i32 {
        self.percentage_of_nodes_to_score.unwrap_or(0)
    }

    /// Builds a framework per profile.
    pub fn build(&self, handle: &Handle) -> Result<Vec<Framework>, ConfigError> {
        if let Some(p) = self.percentage_of_nodes_to_score
            && !(0..=100).contains(&p)
        {
            return Err(ConfigError::Invalid(format!(
                "percentageOfNodesToScore must be in 0..=100, got {p}"
            )));
        }
        let defaults = [Profile::default()];
        let profiles: &[Profile] = if self.profiles.is_empty() {
            &defaults
        } else {
            &self.profiles
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for profile in profiles {
            let fw = build_profile(profile, handle)?;
            if !seen.insert(fw.scheduler_name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "duplicate profile {}",
                    fw.scheduler_name
                )));
            }
            out.push(fw);
        }
        Ok(out)
    }
}

fn build_profile(profile: &Profile, handle: &Handle) -> Result<Framework, ConfigError> {
    let name = profile
        .scheduler_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_owned());
    let empty = Plugins::default();
    let plugins = profile.plugins.as_ref().unwrap_or(&empty);
    let sets = std::iter::once(&plugins.multi_point).chain(plugins.points.values());
    let mut disabled: HashSet<String> = HashSet::new();
    let mut disable_all = false;
    let mut enabled: Vec<(String, Option<i64>)> = Vec::new();
    for set in sets {
        for d in &set.disabled {
            if d.name == "*" {
                disable_all = true;
            } else {
                disabled.insert(d.name.clone());
            }
        }
        for e in &set.enabled {
            match enabled.iter_mut().find(|(n, _)| *n == e.name) {
                Some(slot) => slot.1 = e.weight.or(slot.1),
                None => enabled.push((e.name.clone(), e.weight)),
            }
        }
    }
    let mut chosen: Vec<(String, i64)> = Vec::new();
    if !disable_all {
        for (plugin, weight) in plugins::DEFAULT_PLUGINS {
            if !disabled.contains(*plugin) {
                chosen.push(((*plugin).to_owned(), *weight));
            }
        }
    }
    for (plugin, weight) in enabled {
        match chosen.iter_mut().find(|(n, _)| *n == plugin) {
            Some(slot) => {
                if let Some(w) = weight {
                    slot.1 = w;
                }
            }
            None => chosen.push((plugin, weight.unwrap_or(1))),
        }
    }
    let mut fw = Framework::new(name.clone());
    fw.percentage_of_nodes_to_score = profile.percentage_of_nodes_to_score;
    for (plugin, weight) in chosen {
        let args = profile
            .plugin_config
            .iter()
            .find(|c| c.name == plugin)
            .and_then(|c| c.args.as_ref());
        let built = plugins::build(&plugin, args, handle).map_err(|message| ConfigError::Args {
            profile: name.clone(),
            message,
        })?;
        match built {
            Some(p) => fw.add_plugin(p, weight),
            None => {
                return Err(ConfigError::UnknownPlugin {
                    profile: name.clone(),
                    plugin,
                });
            }
        }
    }
    Ok(fw)
}

/// The default profiles (one `default-scheduler` with the default plugins).
pub fn default_profiles(handle: &Handle) -> Result<Vec<Arc<Framework>>, ConfigError> {
    Ok(SchedulerConfiguration::default()
        .build(handle)?
        .into_iter()
        .map(Arc::new)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_disable_and_weigh_plugins() {
        let cfg = SchedulerConfiguration::parse(
            r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled:
      - name: NodeResourcesBalancedAllocation
      enabled:
      - name: NodeResourcesFit
        weight: 5
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#,
        );
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cfg.percentage(), 30);
        let handle = Handle::new(None);
        let fws = match cfg.build(&handle) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(fws.len(), 2);
        let packer = &fws[1];
        assert_eq!(packer.scheduler_name, "packer");
        let scores: Vec<(&str, i64)> = packer.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert!(scores.contains(&("NodeResourcesFit", 5)));
        assert!(
            !scores
                .iter()
                .any(|(n, _)| *n == "NodeResourcesBalancedAllocation")
        );
    }

    #[test]
    fn unknown_plugins_and_bad_args_are_errors() {
        let handle = Handle::new(None);
        let unknown = SchedulerConfiguration::parse(
            "profiles:\n- plugins:\n    filter:\n      enabled:\n      - name: Nope\n",
        );
        assert!(matches!(
            unknown.map(|c| c.build(&handle)),
            Ok(Err(ConfigError::UnknownPlugin { .. }))
        ));
        let bad = SchedulerConfiguration::parse(
            "profiles:\n- pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: Sideways\n",
        );
        assert!(matches!(
            bad.map(|c| c.build(&handle)),
            Ok(Err(ConfigError::Args { .. }))
        ));
    }
}
