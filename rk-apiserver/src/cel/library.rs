//! What the Kubernetes CEL libraries in this module share: argument
//! helpers, the answers of the ordering methods, and the `Val` boilerplate
//! of an opaque value type.

use std::cmp::Ordering;

use cel::ExecutionError;
use cel::common::types::{CelBool, CelInt, CelString};
use cel::common::value::CowVal;

/// An error of the function `name`.
pub(super) fn error(name: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(name, message)
}

/// The string argument at `at` (the receiver is at 0).
pub(super) fn string_arg<'a>(
    name: &str,
    args: &'a [CowVal<'_, '_>],
    at: usize,
) -> Result<&'a str, ExecutionError> {
    args.get(at)
        .and_then(|v| v.downcast_ref::<CelString>())
        .map(CelString::inner)
        .ok_or_else(|| error(name, "expected a string"))
}

/// A boolean result.
pub(super) fn boolean<'b, 'v>(value: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelBool::from(value)))
}

/// `compareTo` (-1, 0 or 1), `isLessThan` or `isGreaterThan` of an
/// ordering, by the method's name.
pub(super) fn ordering_result<'b, 'v>(
    method: &str,
    order: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    match method {
        "isLessThan" => boolean(order == Ordering::Less),
        "isGreaterThan" => boolean(order == Ordering::Greater),
        _ => Ok(CowVal::owned(CelInt::from(order as i64))),
    }
}

/// `Val` for an opaque, `'static` value type that is `Clone` and
/// `PartialEq` (which `==` uses), of the CEL type in the static `$cel`.
macro_rules! opaque_val {
    ($t:ty, $cel:expr) => {
        impl cel::common::value::Val for $t {
            fn get_type(&self) -> &cel::common::types::Type {
                &$cel
            }

            fn cel_type() -> &'static cel::common::types::Type {
                &$cel
            }

            fn equals(&self, other: &dyn cel::common::value::Val) -> bool {
                other.downcast_ref::<$t>().is_some_and(|o| o == self)
            }

            fn clone_as_boxed<'v>(&self) -> Box<dyn cel::common::value::Val + 'v> {
                Box::new(self.clone())
            }

            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }

        impl cel::common::value::StaticVal for $t {}
    };
}

pub(super) use opaque_val;

/// `compare_to`, `less_than` and `greater_than` overloads (`compareTo`,
/// `isLessThan`, `isGreaterThan`) over the module's
/// `ordering(name, args) -> Result<Ordering, ExecutionError>`.
macro_rules! ordering_methods {
    ($ordering:ident) => {
        fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
            super::library::ordering_result("compareTo", $ordering("compareTo", &args)?)
        }

        fn less_than<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
            super::library::ordering_result("isLessThan", $ordering("isLessThan", &args)?)
        }

        fn greater_than<'b, 'v>(
            args: Vec<CowVal<'b, 'v>>,
        ) -> Result<CowVal<'b, 'v>, ExecutionError> {
            super::library::ordering_result("isGreaterThan", $ordering("isGreaterThan", &args)?)
        }
    };
}

pub(super) use ordering_methods;
