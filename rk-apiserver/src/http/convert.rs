//! Turning objects into the representation a client negotiated: `Table`
//! rows (with upstream's columns) or `PartialObjectMetadata`.

use rk_core::catalogue::ResourceInfo;
use serde_json::{Value, json};

use super::response::{Representation, partial_metadata};
use crate::state::ApiState;

/// Column definitions for a resource (built-in columns, or a CRD's
/// `additionalPrinterColumns`).
pub fn columns(state: &ApiState, info: &ResourceInfo) -> Vec<Value> {
    match state.custom_resource(info) {
        Some(cr) => {
            crate::registry::table::crd_columns(cr.printer_columns(&info.version).unwrap_or(&[]))
        }
        None => crate::registry::table::columns(info),
    }
}

/// One row's cells.
pub fn cells(state: &ApiState, info: &ResourceInfo, obj: &Value) -> Vec<Value> {
    let now = jiff::Timestamp::now();
    match state.custom_resource(info) {
        Some(cr) => crate::registry::table::crd_row_cells(
            cr.printer_columns(&info.version).unwrap_or(&[]),
            obj,
            now,
        ),
        None => crate::registry::table::row_cells(info, obj, now),
    }
}

/// How much of the object a Table row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// From the `includeObject` query parameter.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// A `Table` of objects.
pub fn table(
    state: &ApiState,
    info: &ResourceInfo,
    objs: &[Value],
    rv: &str,
    cont: Option<&str>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(state, info, o)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(state, info),
        "rows": rows,
    })
}

/// Render one object in the negotiated representation.
pub fn single(
    state: &ApiState,
    info: &ResourceInfo,
    obj: Value,
    repr: Representation,
    include: IncludeObject,
) -> Value {
    match repr {
        Representation::Object => obj,
        Representation::Metadata => partial_metadata(&obj),
        Representation::Table => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            table(state, info, &[obj], &rv, None, include)
        }
    }
}
