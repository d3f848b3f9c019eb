//! `configmap-generator`: a `ConfigMapGenerator` renders one ConfigMap from
//! literal `data` and `templates` (text with `{{key}}` placeholders filled
//! from `data`), owns it, and keeps it in sync: a ConfigMap that is deleted
//! is recreated and one that is edited is reverted, because every change to
//! an owned ConfigMap reconciles its generator again.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, CustomResource, Resource, ResourceExt};
use rk_runtime::Store;
use rk_runtime::cache::ObjectKey;
use rk_runtime::controller::{Action, ControllerBuilder, Reconciler};
use rk_runtime::events::{EventType, Recorder};
use rk_runtime::factory::InformerOptions;
use rk_runtime::finalizer::{FinalizerEvent, finalize};
use rk_runtime::manager::Manager;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::{
    OperatorConfig, ReconcileError, manager as new_manager, patch_status, publish, recorder,
    set_condition,
};

/// The finalizer the operator keeps on every `ConfigMapGenerator`.
pub const FINALIZER: &str = "examples.rk.dev/configmap-generator";
/// The label on generated ConfigMaps naming their generator.
pub const GENERATOR_LABEL: &str = "examples.rk.dev/generator";

/// A ConfigMap to render and keep in sync.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.rk.dev",
    version = "v1",
    kind = "ConfigMapGenerator",
    namespaced,
    status = "ConfigMapGeneratorStatus",
    shortname = "cmg"
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapGeneratorSpec {
    /// The ConfigMap's name (default: the generator's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Literal entries, copied as they are and used as template values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Entries rendered from templates: `{{key}}` becomes `data[key]`.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

/// What the operator observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapGeneratorStatus {
    /// The ConfigMap kept in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the ConfigMap holds the rendered data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A template that does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{{key}}` names no entry of `data`.
    #[error("template {template:?}: no value for {{{{{key}}}}}")]
    MissingKey {
        /// The template's key.
        template: String,
        /// The missing value's key.
        key: String,
    },
    /// A `{{` with no `}}` after it.
    #[error("template {0:?}: unclosed {{{{")]
    Unclosed(String),
}

// ANCHOR: render
/// Render `template` (named `name` in errors): every `{{key}}` (spaces
/// around the key allowed) becomes `values[key]`.
pub fn render(
    name: &str,
    template: &str,
    values: &BTreeMap<String, String>,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| RenderError::Unclosed(name.to_owned()))?;
        let key = after[..end].trim();
        let value = values.get(key).ok_or_else(|| RenderError::MissingKey {
            template: name.to_owned(),
            key: key.to_owned(),
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The data a generator's ConfigMap must hold.
pub fn rendered_data(
    spec: &ConfigMapGeneratorSpec,
) -> Result<BTreeMap<String, String>, RenderError> {
    let mut data = spec.data.clone();
    for (name, template) in &spec.templates {
        data.insert(name.clone(), render(name, template, &spec.data)?);
    }
    Ok(data)
}
// ANCHOR_END: render

/// Reconciles `ConfigMapGenerator`s.
pub struct GeneratorReconciler {
    client: Client,
    generators: Store<ConfigMapGenerator>,
    config_maps: Store<ConfigMap>,
    recorder: Arc<Recorder>,
}

impl Reconciler for GeneratorReconciler {
    type Error = ReconcileError;

    async fn reconcile(&self, key: ObjectKey) -> Result<Action, ReconcileError> {
        let Some(generator) = self.generators.get(&key) else {
            return Ok(Action::Done);
        };
        let namespace = generator.namespace().unwrap_or_default();
        let api: Api<ConfigMapGenerator> = Api::namespaced(self.client.clone(), &namespace);
        let outcome = finalize(&api, FINALIZER, (*generator).clone(), |event| async {
            match event {
                FinalizerEvent::Apply(g) => self.apply(&g).await,
                FinalizerEvent::Cleanup(g) => {
                    let note = "generator deleted; its ConfigMap goes with it".to_owned();
                    publish(&self.recorder, &g, EventType::Normal, "Deleting", note).await;
                    Ok(Action::Done)
                }
            }
        })
        .await;
        match outcome {
            Ok(action) => Ok(action.unwrap_or(Action::Done)),
            Err(e) => {
                let e = ReconcileError::from(e);
                let note = e.to_string();
                publish(
                    &self.recorder,
                    &*generator,
                    EventType::Warning,
                    "ReconcileFailed",
                    note,
                )
                .await;
                Err(e)
            }
        }
    }
}

impl GeneratorReconciler {
    // ANCHOR: sync
    async fn apply(&self, generator: &ConfigMapGenerator) -> Result<Action, ReconcileError> {
        let name = generator.name_any();
        let namespace = generator.namespace().unwrap_or_default();
        let target = generator
            .spec
            .config_map_name
            .clone()
            .unwrap_or_else(|| name.clone());
        let uid = generator.uid().unwrap_or_default();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        let mut status = generator.status.clone().unwrap_or_default();
        status.observed_generation = generator.metadata.generation;

        // 1. Render; a bad template is the user's to fix, not a retry.
        let data = match rendered_data(&generator.spec) {
            Ok(data) => data,
            Err(e) => {
                set_condition(
                    &mut status.conditions,
                    "Ready",
                    false,
                    "RenderFailed",
                    e.to_string(),
                    status.observed_generation,
                );
                self.write_status(generator, &status).await?;
                publish(
                    &self.recorder,
                    generator,
                    EventType::Warning,
                    "RenderFailed",
                    e.to_string(),
                )
                .await;
                return Ok(Action::Done);
            }
        };

        // 2. ConfigMaps we own under another name (the spec was renamed) go.
        for old in self.config_maps.list_namespace(&namespace) {
            let ours = old
                .owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid);
            if ours && old.name_any() != target {
                config_maps
                    .delete(&old.name_any(), &DeleteParams::default())
                    .await?;
            }
        }

        // 3. Create it, or revert whatever drifted. A ConfigMap that lost our
        // label is not in the cache: creating it fails with 409, and the live
        // copy is reverted instead.
        let wanted = desired_config_map(generator, &target, data)?;
        let mut current = self
            .config_maps
            .get(&ObjectKey::namespaced(&namespace, &target));
        if current.is_none() {
            match config_maps.create(&PostParams::default(), &wanted).await {
                Ok(_) => {
                    let note = format!("created ConfigMap {target}");
                    publish(
                        &self.recorder,
                        generator,
                        EventType::Normal,
                        "Created",
                        note,
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    current = Some(Arc::new(config_maps.get(&target).await?));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(current) = current
            && (current.data != wanted.data || current.labels() != wanted.labels())
        {
            let mut replacement = wanted.clone();
            replacement.metadata.resource_version = current.resource_version();
            config_maps
                .replace(&target, &PostParams::default(), &replacement)
                .await?;
            let note = format!("reverted changes to ConfigMap {target}");
            publish(&self.recorder, generator, EventType::Normal, "Synced", note).await;
        }

        // 4. Status.
        status.config_map_name = Some(target.clone());
        set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "Synced",
            format!("ConfigMap {target} is up to date"),
            status.observed_generation,
        );
        self.write_status(generator, &status).await?;
        Ok(Action::Done)
    }
    // ANCHOR_END: sync

    async fn write_status(
        &self,
        generator: &ConfigMapGenerator,
        status: &ConfigMapGeneratorStatus,
    ) -> Result<(), ReconcileError> {
        if generator.status.as_ref() == Some(status) {
            return Ok(());
        }
        let api: Api<ConfigMapGenerator> = Api::namespaced(
            self.client.clone(),
            &generator.namespace().unwrap_or_default(),
        );
        patch_status(
            &api,
            &generator.name_any(),
            generator.status.as_ref(),
            status,
        )
        .await?;
        Ok(())
    }
}

/// The ConfigMap `generator` wants under the name `name`, controlled by it.
pub fn desired_config_map(
    generator: &ConfigMapGenerator,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<ConfigMap, ReconcileError> {
    let owner = generator
        .controller_owner_ref(&())
        .ok_or_else(|| ReconcileError::Invalid("ConfigMapGenerator has no uid yet".into()))?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: generator.namespace(),
            labels: Some(BTreeMap::from([(
                GENERATOR_LABEL.to_owned(),
                generator.name_any(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// A [`Manager`] running the `configmap-generator` controller under `config`.
pub fn manager(client: Client, config: &OperatorConfig) -> Manager {
    let mut manager = new_manager(client.clone(), config);
    // Only ConfigMaps carrying our label are cached, not every ConfigMap.
    let owned = InformerOptions::all().labels(GENERATOR_LABEL);
    let builder =
        ControllerBuilder::<ConfigMapGenerator>::new("configmap-generator", manager.factory())
            .owns::<ConfigMap>(&owned)
            .workers(config.workers)
            .metrics(manager.controller_metrics(), Some(manager.queue_metrics()));
    let generators = builder.store();
    let config_maps = manager.factory().informer::<ConfigMap>(&owned).store();
    let reconciler = GeneratorReconciler {
        recorder: recorder(
            client.clone(),
            "examples.rk.dev/configmap-generator",
            config,
        ),
        client,
        generators,
        config_maps,
    };
    manager.add_controller(builder.build(reconciler));
    manager
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([("host".into(), "db".into()), ("port".into(), "5432".into())])
    }

    #[test]
    fn placeholders_are_replaced_with_values() {
        let out = render("url", "postgres://{{host}}:{{ port }}/app", &values()).unwrap();
        assert_eq!(out, "postgres://db:5432/app");
    }

    #[test]
    fn text_without_placeholders_is_unchanged() {
        assert_eq!(
            render("t", "plain } { text", &values()).unwrap(),
            "plain } { text"
        );
    }

    #[test]
    fn a_missing_value_is_an_error_naming_it() {
        let err = render("t", "{{user}}", &values()).unwrap_err();
        assert_eq!(
            err,
            RenderError::MissingKey {
                template: "t".into(),
                key: "user".into()
            }
        );
        assert!(err.to_string().contains("{{user}}"), "{err}");
    }

    #[test]
    fn an_unclosed_placeholder_is_an_error() {
        assert_eq!(
            render("t", "a {{host", &values()),
            Err(RenderError::Unclosed("t".into()))
        );
    }
}
