//! forge-safety (under construction).
#![deny(missing_docs)]
