//! [`ParamFilter`]: which parameters an EWC penalty covers when the model changes between tasks.

use std::fmt;
use std::sync::Arc;

/// A name predicate: `true` leaves the parameter out.
type NamePredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Decides which named parameters EWC keeps when it is built, re-bound to a changed model or
/// loaded from a file.
///
/// - Name rules: [`ParamFilter::exclude_prefix`] and [`ParamFilter::exclude_if`] leave out
///   parameters by name (e.g. a task head `"classifier."`).
/// - Shape rule: with [`ParamFilter::skip_shape_mismatch`] a parameter whose shape differs from
///   the stored Fisher/anchor (a head replaced 2 -> 4 classes) is left out instead of failing
///   with [`crate::EwcError::ShapeMismatch`].
///
/// The default keeps everything and treats a shape mismatch as an error.
#[derive(Clone, Default)]
pub struct ParamFilter {
    prefixes: Vec<String>,
    predicates: Vec<NamePredicate>,
    skip_shape_mismatch: bool,
}

impl fmt::Debug for ParamFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamFilter")
            .field("exclude_prefixes", &self.prefixes)
            .field("exclude_predicates", &self.predicates.len())
            .field("skip_shape_mismatch", &self.skip_shape_mismatch)
            .finish()
    }
}

impl ParamFilter {
    /// Keep every parameter; shape mismatches are errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leave out parameters whose name starts with `prefix`.
    pub fn exclude_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Leave out parameters for which `predicate(name)` is true.
    pub fn exclude_if(mut self, predicate: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.predicates.push(Arc::new(predicate));
        self
    }

    /// Leave out (`true`) or reject (`false`, the default) parameters whose shape changed.
    pub fn skip_shape_mismatch(mut self, skip: bool) -> Self {
        self.skip_shape_mismatch = skip;
        self
    }

    /// Whether a shape mismatch leaves the parameter out instead of failing.
    pub fn skips_shape_mismatch(&self) -> bool {
        self.skip_shape_mismatch
    }

    /// Whether `name` is excluded by a name rule.
    pub fn excludes(&self, name: &str) -> bool {
        self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || self.predicates.iter().any(|f| f(name))
    }
}

/// What [`crate::Ewc::bind`] (or a filtered build or load) did with each name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindReport {
    /// Names now penalised, bound to the model's `Var`s.
    pub bound: Vec<String>,
    /// Names left out by a name rule.
    pub excluded: Vec<String>,
    /// Names left out because the shape changed: `(name, stored shape, model shape)`.
    pub skipped_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Model parameters that have no EWC entry (new parameters, e.g. a new head): not penalised.
    pub unpenalised: Vec<String>,
}
