//! TEMPORARY STUB written by the lead so the crate compiles: replace this file entirely.
use rk_core::catalogue::ResourceInfo;
use rk_core::k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};
/// Columns.
pub fn columns(_info: &ResourceInfo) -> Vec<Value> {
    vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ]
}
/// Cells.
pub fn row_cells(_info: &ResourceInfo, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![obj["metadata"]["name"].clone()]
}
/// CRD columns.
pub fn crd_columns(_c: &[CustomResourceColumnDefinition]) -> Vec<Value> {
    vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ]
}
/// CRD cells.
pub fn crd_row_cells(
    _c: &[CustomResourceColumnDefinition],
    obj: &Value,
    _now: jiff::Timestamp,
) -> Vec<Value> {
    vec![obj["metadata"]["name"].clone()]
}
