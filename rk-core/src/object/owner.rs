//! Owner and controller references.
//!
//! An object has at most one controller: the owner reference with
//! `controller: true`. Controllers adopt objects by adding such a reference
//! and find what they own by it (upstream `metav1.GetControllerOf`,
//! `metav1.NewControllerRef`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube_core::Resource;

use super::ObjectError;

/// The object's controller reference, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether the object's controller has this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// A controller reference to `owner` (`controller` and `blockOwnerDeletion`
/// true); errors when the owner has no name or uid.
pub fn new_controller_ref(
    owner: &ObjectMeta,
    api_version: &str,
    kind: &str,
) -> Result<OwnerReference, ObjectError> {
    let name = owner.name.clone().filter(|n| !n.is_empty());
    let uid = owner.uid.clone().filter(|u| !u.is_empty());
    Ok(OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.ok_or(ObjectError::MissingOwnerField("name"))?,
        uid: uid.ok_or(ObjectError::MissingOwnerField("uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// [`new_controller_ref`] with the owner's own `apiVersion` and `kind`.
pub fn controller_ref_for<K>(owner: &K) -> Result<OwnerReference, ObjectError>
where
    K: Resource<DynamicType = ()>,
{
    new_controller_ref(owner.meta(), &K::api_version(&()), &K::kind(&()))
}

/// Adds `reference`, or replaces the reference with the same uid; returns
/// whether the metadata changed.
pub fn add_owner_reference(meta: &mut ObjectMeta, reference: OwnerReference) -> bool {
    let refs = meta.owner_references.get_or_insert_with(Vec::new);
    match refs.iter_mut().find(|r| r.uid == reference.uid) {
        Some(existing) if *existing == reference => false,
        Some(existing) => {
            *existing = reference;
            true
        }
        None => {
            refs.push(reference);
            true
        }
    }
}

/// Removes the references with this uid; returns whether the metadata changed.
pub fn remove_owner_reference(meta: &mut ObjectMeta, owner_uid: &str) -> bool {
    let Some(refs) = meta.owner_references.as_mut() else {
        return false;
    };
    let before = refs.len();
    refs.retain(|r| r.uid != owner_uid);
    refs.len() != before
}

/// Makes `reference` the object's controller reference (forcing
/// `controller: true`); errors when another owner already controls the
/// object. Returns whether the metadata changed.
pub fn set_controller_reference(
    meta: &mut ObjectMeta,
    mut reference: OwnerReference,
) -> Result<bool, ObjectError> {
    if let Some(existing) = controller_of(meta).filter(|r| r.uid != reference.uid) {
        return Err(ObjectError::AlreadyControlled {
            kind: existing.kind.clone(),
            name: existing.name.clone(),
            uid: existing.uid.clone(),
        });
    }
    reference.controller = Some(true);
    Ok(add_owner_reference(meta, reference))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;

    use super::*;

    fn owner(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        }
    }

    fn reference(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn new_controller_ref_sets_controller_and_block_owner_deletion() {
        let Ok(r) = new_controller_ref(&owner("web", "u1"), "apps/v1", "ReplicaSet") else {
            panic!("owner with name and uid rejected");
        };
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(
            (r.name.as_str(), r.uid.as_str(), r.kind.as_str()),
            ("web", "u1", "ReplicaSet")
        );
    }

    #[test]
    fn controller_ref_for_uses_the_owner_type() {
        let rs = ReplicaSet {
            metadata: owner("web", "u1"),
            ..ReplicaSet::default()
        };
        let r = controller_ref_for(&rs).map(|r| (r.api_version, r.kind));
        assert_eq!(r, Ok(("apps/v1".to_owned(), "ReplicaSet".to_owned())));
    }

    #[test]
    fn owner_without_uid_cannot_be_referenced() {
        let meta = ObjectMeta {
            name: Some("web".into()),
            ..ObjectMeta::default()
        };
        assert_eq!(
            new_controller_ref(&meta, "v1", "Pod"),
            Err(ObjectError::MissingOwnerField("uid"))
        );
    }

    #[test]
    fn controller_of_ignores_non_controller_owners() {
        let mut meta = ObjectMeta::default();
        add_owner_reference(&mut meta, reference("plain", false));
        assert_eq!(controller_of(&meta), None);
        add_owner_reference(&mut meta, reference("ctrl", true));
        assert!(is_controlled_by(&meta, "ctrl"));
        assert!(!is_controlled_by(&meta, "plain"));
    }

    #[test]
    fn adding_the_same_reference_twice_changes_nothing() {
        let mut meta = ObjectMeta::default();
        assert!(add_owner_reference(&mut meta, reference("u1", false)));
        assert!(!add_owner_reference(&mut meta, reference("u1", false)));
        assert!(add_owner_reference(&mut meta, reference("u1", true)));
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
        assert!(remove_owner_reference(&mut meta, "u1"));
        assert!(!remove_owner_reference(&mut meta, "u1"));
    }

    #[test]
    fn a_second_controller_is_refused() {
        let mut meta = ObjectMeta::default();
        assert_eq!(
            set_controller_reference(&mut meta, reference("u1", true)),
            Ok(true)
        );
        assert_eq!(
            set_controller_reference(&mut meta, reference("u1", true)),
            Ok(false)
        );
        assert!(matches!(
            set_controller_reference(&mut meta, reference("u2", true)),
            Err(ObjectError::AlreadyControlled { uid, .. }) if uid == "u1"
        ));
    }
}
