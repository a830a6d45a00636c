//! forge-models (under construction).
#![deny(missing_docs)]
