//! The `paths` of the documents: one operation per verb of every served
//! resource, in upstream's shape (operation ids, tags, query parameters, the
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions that
//! kubectl looks for).

use rk_core::catalogue::{ResourceInfo, Scope};
use serde_json::{Map, Value, json};

use super::builtin::{
    API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSIONS, DELETE_OPTIONS, PATCH, SCALE,
    STATUS, V2_REF_PREFIX, V3_REF_PREFIX, gvk,
};

/// Which OpenAPI version a document is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Swagger 2.0 (`/openapi/v2`).
    V2,
    /// OpenAPI 3.0 (`/openapi/v3/...`).
    V3,
}

impl Flavor {
    /// A `$ref` to a named schema.
    pub(crate) fn reference(self, name: &str) -> Value {
        let prefix = match self {
            Flavor::V2 => V2_REF_PREFIX,
            Flavor::V3 => V3_REF_PREFIX,
        };
        json!({ "$ref": format!("{prefix}{name}") })
    }
}

/// One resource to describe, with the definitions its operations refer to.
pub(crate) struct Served<'a> {
    /// The catalogue entry.
    pub(crate) info: &'a ResourceInfo,
    /// Definition name of the kind.
    pub(crate) kind_def: String,
    /// Definition name of the list kind.
    pub(crate) list_def: String,
    /// A custom resource: no strategic merge patch.
    pub(crate) custom: bool,
}

const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const CUSTOM_PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];

/// Query parameters: (name, type, description).
type Query = (&'static str, &'static str, &'static str);

const DRY_RUN: Query = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Query = (
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_VALIDATION: Query = (
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Query = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const GRACE_PERIOD: Query = (
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
);
const IGNORE_STORE_READ_ERROR: Query = (
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it",
);
const ORPHAN_DEPENDENTS: Query = (
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.",
);
const PROPAGATION_POLICY: Query = (
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
);
const LIST_QUERIES: &[Query] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
    ),
    (
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.",
    ),
    (
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
    ),
    (
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
    ),
    (
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
    ),
];
const PRETTY: Query = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP client (curl and wget).",
);

fn parameter(
    flavor: Flavor,
    (name, ty, description): Query,
    location: &str,
    required: bool,
) -> Value {
    let mut p = Map::new();
    p.insert("name".into(), name.into());
    p.insert("in".into(), location.into());
    p.insert("description".into(), description.into());
    if required {
        p.insert("required".into(), true.into());
    }
    match flavor {
        Flavor::V3 => {
            p.insert("schema".into(), json!({"type": ty, "uniqueItems": true}));
        }
        Flavor::V2 => {
            p.insert("type".into(), ty.into());
            p.insert("uniqueItems".into(), true.into());
        }
    }
    Value::Object(p)
}

fn query(flavor: Flavor, q: Query) -> Value {
    parameter(flavor, q, "query", false)
}

/// `CamelCase` form of a group for operation ids: `""` -> `Core`,
/// `rbac.authorization.k8s.io` -> `RbacAuthorization`, `example.com` -> `ExampleCom`.
pub(crate) fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed
        .split(['.', '-'])
        .map(capitalize)
        .collect::<Vec<_>>()
        .join("")
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The operation tag upstream uses: `apps_v1`, `core_v1`, `rbacAuthorization_v1`.
pub(crate) fn tag(group: &str, version: &str) -> String {
    let id = group_id(group);
    let mut chars = id.chars();
    let lower: String = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn base_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn responses(flavor: Flavor, codes: &[(&str, &str)], schema: &str, media: &[&str]) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        let response = match flavor {
            Flavor::V3 => {
                let content: Map<String, Value> = media
                    .iter()
                    .map(|m| ((*m).to_owned(), json!({"schema": flavor.reference(schema)})))
                    .collect();
                json!({"description": description, "content": content})
            }
            Flavor::V2 => json!({"description": description, "schema": flavor.reference(schema)}),
        };
        out.insert((*code).to_owned(), response);
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

/// What one operation needs.
struct Op<'a> {
    action: &'a str,
    id: String,
    description: String,
    queries: Vec<Query>,
    body: Option<(&'a str, &'a [&'a str])>,
    codes: &'a [(&'a str, &'a str)],
    response: &'a str,
    media: &'a [&'a str],
    gvk: Value,
    tag: &'a str,
}

fn operation(flavor: Flavor, op: Op<'_>) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([op.tag]));
    o.insert("description".into(), op.description.into());
    o.insert("operationId".into(), op.id.into());
    let mut params: Vec<Value> = op.queries.into_iter().map(|q| query(flavor, q)).collect();
    if let Some((schema, content_types)) = op.body {
        match flavor {
            Flavor::V3 => {
                let content: Map<String, Value> = content_types
                    .iter()
                    .map(|c| ((*c).to_owned(), json!({"schema": flavor.reference(schema)})))
                    .collect();
                o.insert(
                    "requestBody".into(),
                    json!({"content": content, "required": true}),
                );
            }
            Flavor::V2 => {
                params.insert(
                    0,
                    json!({"name": "body", "in": "body", "required": true, "schema": flavor.reference(schema)}),
                );
                o.insert("consumes".into(), json!(content_types));
            }
        }
    } else if flavor == Flavor::V2 {
        o.insert("consumes".into(), json!(["*/*"]));
    }
    if flavor == Flavor::V2 {
        o.insert("produces".into(), json!(op.media));
        o.insert("schemes".into(), json!(["https"]));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    o.insert(
        "responses".into(),
        responses(flavor, op.codes, op.response, op.media),
    );
    o.insert("x-kubernetes-action".into(), op.action.into());
    o.insert("x-kubernetes-group-version-kind".into(), op.gvk);
    Value::Object(o)
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const REPLACED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// Adds the paths of one resource (and its status and scale subresources).
pub(crate) fn resource_paths(flavor: Flavor, served: &Served<'_>, paths: &mut Map<String, Value>) {
    let info = served.info;
    let base = base_path(&info.group, &info.version);
    let namespaced = info.scope == Scope::Namespaced;
    let gid = group_id(&info.group);
    let ver = capitalize(&info.version);
    let scope_word = if namespaced { "Namespaced" } else { "" };
    let kind = &info.kind;
    let tag = tag(&info.group, &info.version);
    let kind_gvk = gvk(&info.group, &info.version, kind);
    let collection = if namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let item = format!("{collection}/{{name}}");
    let name_param = parameter(
        flavor,
        ("name", "string", "name of the resource"),
        "path",
        true,
    );
    let ns_param = parameter(
        flavor,
        (
            "namespace",
            "string",
            "object name and auth scope, such as for teams and projects",
        ),
        "path",
        true,
    );
    let patch_types = if served.custom {
        CUSTOM_PATCH_TYPES
    } else {
        PATCH_TYPES
    };
    let write_queries = || vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
    let delete_queries = || {
        vec![
            DRY_RUN,
            GRACE_PERIOD,
            IGNORE_STORE_READ_ERROR,
            ORPHAN_DEPENDENTS,
            PROPAGATION_POLICY,
        ]
    };
    let mk = |action: &'static str,
              id: String,
              description: String,
              queries: Vec<Query>,
              body: Option<(&'static str, &'static [&'static str])>,
              codes: &'static [(&'static str, &'static str)],
              response: &str,
              media: &'static [&'static str],
              gvk: &Value| {
        operation(
            flavor,
            Op {
                action,
                id,
                description,
                queries,
                body,
                codes,
                response,
                media,
                gvk: gvk.clone(),
                tag: &tag,
            },
        )
    };
    let path_params = |with_name: bool| {
        let mut p = Vec::new();
        if with_name {
            p.push(name_param.clone());
        }
        if namespaced {
            p.push(ns_param.clone());
        }
        p.push(query(flavor, PRETTY));
        Value::Array(p)
    };

    // The collection: list, create, deletecollection.
    let mut coll = Map::new();
    if info.has_verb("list") {
        coll.insert(
            "get".into(),
            mk(
                "list",
                format!("list{gid}{ver}{scope_word}{kind}"),
                format!("list or watch objects of kind {kind}"),
                LIST_QUERIES.to_vec(),
                None,
                OK,
                &served.list_def,
                LIST_MEDIA_TYPES,
                &kind_gvk,
            ),
        );
    }
    if info.has_verb("create") {
        coll.insert(
            "post".into(),
            operation(
                flavor,
                Op {
                    action: "post",
                    id: format!("create{gid}{ver}{scope_word}{kind}"),
                    description: format!("create a {kind}"),
                    queries: write_queries(),
                    body: Some((&served.kind_def, &["*/*"])),
                    codes: CREATED,
                    response: &served.kind_def,
                    media: MEDIA_TYPES,
                    gvk: kind_gvk.clone(),
                    tag: &tag,
                },
            ),
        );
    }
    if info.has_verb("deletecollection") {
        let mut queries = delete_queries();
        queries.extend_from_slice(LIST_QUERIES);
        queries.retain(|q| q.0 != "allowWatchBookmarks" && q.0 != "watch");
        coll.insert(
            "delete".into(),
            mk(
                "deletecollection",
                format!("delete{gid}{ver}Collection{scope_word}{kind}"),
                format!("delete collection of {kind}"),
                queries,
                Some((DELETE_OPTIONS, &["*/*"])),
                OK,
                STATUS,
                MEDIA_TYPES,
                &kind_gvk,
            ),
        );
    }
    if !coll.is_empty() {
        coll.insert("parameters".into(), path_params(false));
        paths.insert(collection.clone(), Value::Object(coll));
    }

    // The item: read, replace, patch, delete.
    let mut one = Map::new();
    if info.has_verb("get") {
        one.insert(
            "get".into(),
            mk(
                "get",
                format!("read{gid}{ver}{scope_word}{kind}"),
                format!("read the specified {kind}"),
                Vec::new(),
                None,
                OK,
                &served.kind_def,
                MEDIA_TYPES,
                &kind_gvk,
            ),
        );
    }
    if info.has_verb("update") {
        one.insert(
            "put".into(),
            operation(
                flavor,
                Op {
                    action: "put",
                    id: format!("replace{gid}{ver}{scope_word}{kind}"),
                    description: format!("replace the specified {kind}"),
                    queries: write_queries(),
                    body: Some((&served.kind_def, &["*/*"])),
                    codes: REPLACED,
                    response: &served.kind_def,
                    media: MEDIA_TYPES,
                    gvk: kind_gvk.clone(),
                    tag: &tag,
                },
            ),
        );
    }
    if info.has_verb("patch") {
        let mut queries = write_queries();
        queries.push(FORCE);
        one.insert(
            "patch".into(),
            mk(
                "patch",
                format!("patch{gid}{ver}{scope_word}{kind}"),
                format!("partially update the specified {kind}"),
                queries,
                Some((PATCH, patch_types)),
                REPLACED,
                &served.kind_def,
                MEDIA_TYPES,
                &kind_gvk,
            ),
        );
    }
    if info.has_verb("delete") {
        one.insert(
            "delete".into(),
            mk(
                "delete",
                format!("delete{gid}{ver}{scope_word}{kind}"),
                format!("delete a {kind}"),
                delete_queries(),
                Some((DELETE_OPTIONS, &["*/*"])),
                DELETED,
                STATUS,
                MEDIA_TYPES,
                &kind_gvk,
            ),
        );
    }
    if !one.is_empty() {
        one.insert("parameters".into(), path_params(true));
        paths.insert(item.clone(), Value::Object(one));
    }

    // Across namespaces.
    if namespaced && info.has_verb("list") {
        let mut all = Map::new();
        all.insert(
            "get".into(),
            mk(
                "list",
                format!("list{gid}{ver}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                LIST_QUERIES.to_vec(),
                None,
                OK,
                &served.list_def,
                LIST_MEDIA_TYPES,
                &kind_gvk,
            ),
        );
        all.insert("parameters".into(), json!([query(flavor, PRETTY)]));
        paths.insert(format!("{base}/{}", info.plural), Value::Object(all));
    }

    // Subresources with a schema of their own.
    let subresources: [(&str, &str, Value, &str); 2] = [
        (
            "status",
            "Status",
            kind_gvk.clone(),
            served.kind_def.as_str(),
        ),
        ("scale", "Scale", gvk("autoscaling", "v1", "Scale"), SCALE),
    ];
    for (sub, suffix, sub_gvk, schema) in subresources {
        if !info.has_subresource(sub) {
            continue;
        }
        let mut s = Map::new();
        s.insert(
            "get".into(),
            mk(
                "get",
                format!("read{gid}{ver}{scope_word}{kind}{suffix}"),
                format!("read {sub} of the specified {kind}"),
                Vec::new(),
                None,
                OK,
                schema,
                MEDIA_TYPES,
                &sub_gvk,
            ),
        );
        s.insert(
            "put".into(),
            operation(
                flavor,
                Op {
                    action: "put",
                    id: format!("replace{gid}{ver}{scope_word}{kind}{suffix}"),
                    description: format!("replace {sub} of the specified {kind}"),
                    queries: write_queries(),
                    body: Some((schema, &["*/*"])),
                    codes: REPLACED,
                    response: schema,
                    media: MEDIA_TYPES,
                    gvk: sub_gvk.clone(),
                    tag: &tag,
                },
            ),
        );
        let mut queries = write_queries();
        queries.push(FORCE);
        s.insert(
            "patch".into(),
            mk(
                "patch",
                format!("patch{gid}{ver}{scope_word}{kind}{suffix}"),
                format!("partially update {sub} of the specified {kind}"),
                queries,
                Some((PATCH, patch_types)),
                REPLACED,
                schema,
                MEDIA_TYPES,
                &sub_gvk,
            ),
        );
        s.insert("parameters".into(), path_params(true));
        paths.insert(format!("{item}/{sub}"), Value::Object(s));
    }
}

/// `GET /apis/<group>/<version>/`: the resource list of a group version.
pub(crate) fn group_version_root(
    flavor: Flavor,
    group: &str,
    version: &str,
    paths: &mut Map<String, Value>,
) {
    let op = discovery_op(
        flavor,
        &format!("get{}{}APIResources", group_id(group), capitalize(version)),
        "get available resources",
        API_RESOURCE_LIST,
        &tag(group, version),
    );
    paths.insert(
        format!("{}/", base_path(group, version)),
        json!({ "get": op }),
    );
}

/// The discovery documents: `api` (`/api/`), `apis` (`/apis/`) and
/// `apis/<group>` (`/apis/<group>/`).
pub(crate) fn discovery_paths(flavor: Flavor, key: &str, paths: &mut Map<String, Value>) {
    let (path, id, schema, tag) = match key {
        "api" => (
            "/api/".to_owned(),
            "getCoreAPIVersions".to_owned(),
            API_VERSIONS,
            "core".to_owned(),
        ),
        "apis" => (
            "/apis/".to_owned(),
            "getAPIVersions".to_owned(),
            API_GROUP_LIST,
            "apis".to_owned(),
        ),
        other => {
            let group = other.strip_prefix("apis/").unwrap_or(other);
            let id = group_id(group);
            let mut chars = id.chars();
            let lower: String = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            (
                format!("/apis/{group}/"),
                format!("get{id}APIGroup"),
                API_GROUP,
                lower,
            )
        }
    };
    let op = discovery_op(flavor, &id, "get information of a group", schema, &tag);
    paths.insert(path, json!({ "get": op }));
}

fn discovery_op(flavor: Flavor, id: &str, description: &str, schema: &str, tag: &str) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([tag]));
    o.insert("description".into(), description.into());
    o.insert("operationId".into(), id.into());
    if flavor == Flavor::V2 {
        o.insert("consumes".into(), json!(MEDIA_TYPES));
        o.insert("produces".into(), json!(MEDIA_TYPES));
        o.insert("schemes".into(), json!(["https"]));
    }
    o.insert(
        "responses".into(),
        responses(flavor, OK, schema, MEDIA_TYPES),
    );
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_follow_upstream_operation_ids() {
        assert_eq!(group_id(""), "Core");
        assert_eq!(group_id("apps"), "Apps");
        assert_eq!(group_id("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_id("stable.example.com"), "StableExampleCom");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }
}
