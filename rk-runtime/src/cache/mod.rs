//! The client-side object cache: a [`Store`] of `Arc<K>` with named
//! [indexes](index) and listers.

pub mod index;
mod key;
mod store;

pub use index::{IndexFn, NAMESPACE_INDEX};
pub use key::ObjectKey;
pub use store::{Applied, Relist, Store, StoreError, Transform, drop_managed_fields};
