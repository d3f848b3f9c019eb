//! The registry: what happens to an object between the HTTP handler and
//! storage. [`store`] is the generic flow every kind shares (create, update,
//! delete, generation, status split, graceful deletion, finalizers); the
//! per-kind pieces are [`defaults`], [`validation`], [`typed`] decoding and
//! [`table`] columns; [`subresources`] holds scale, binding and eviction.

pub mod conversion;
pub mod defaults;
pub mod meta;
pub mod store;
pub mod subresources;
pub mod table;
pub mod typed;
pub mod validation;
pub mod versions;
