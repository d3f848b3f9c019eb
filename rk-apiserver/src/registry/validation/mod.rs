//! TEMPORARY STUB written by the lead so the crate compiles: replace this file entirely.
use rk_core::catalogue::ResourceInfo;
/// Cause.
pub struct Cause {
    /// Field.
    pub field: String,
}
impl Cause {
    /// Reason.
    pub fn reason_str(&self) -> &'static str {
        "FieldValueInvalid"
    }
    /// Message.
    pub fn detail_message(&self) -> String {
        String::new()
    }
}
/// Validate.
pub fn validate(
    _info: &ResourceInfo,
    _obj: &serde_json::Value,
    _old: Option<&serde_json::Value>,
) -> Vec<Cause> {
    Vec::new()
}
