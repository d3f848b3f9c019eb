//! Finalizers on object metadata.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Whether the object carries the finalizer.
pub fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Adds the finalizer unless present; returns whether the metadata changed.
pub fn add_finalizer(meta: &mut ObjectMeta, finalizer: &str) -> bool {
    if has_finalizer(meta, finalizer) {
        return false;
    }
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(finalizer.to_owned());
    true
}

/// Removes every occurrence of the finalizer; returns whether the metadata
/// changed. An emptied list stays `Some(vec![])`, so a merge patch built from
/// the metadata clears the field.
pub fn remove_finalizer(meta: &mut ObjectMeta, finalizer: &str) -> bool {
    let Some(finalizers) = meta.finalizers.as_mut() else {
        return false;
    };
    let before = finalizers.len();
    finalizers.retain(|f| f != finalizer);
    finalizers.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_finalizer_twice_changes_the_object_once() {
        let mut meta = ObjectMeta::default();
        assert!(add_finalizer(&mut meta, "example.com/cleanup"));
        assert!(!add_finalizer(&mut meta, "example.com/cleanup"));
        assert!(has_finalizer(&meta, "example.com/cleanup"));
        assert_eq!(meta.finalizers.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn removing_a_finalizer_reports_whether_it_was_there() {
        let mut meta = ObjectMeta {
            finalizers: Some(vec!["a".into(), "b".into(), "a".into()]),
            ..ObjectMeta::default()
        };
        assert!(remove_finalizer(&mut meta, "a"));
        assert_eq!(meta.finalizers, Some(vec!["b".to_owned()]));
        assert!(!remove_finalizer(&mut meta, "a"));
        assert!(!remove_finalizer(&mut ObjectMeta::default(), "a"));
    }
}
