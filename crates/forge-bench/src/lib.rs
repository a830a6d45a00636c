//! forge-bench (under construction).
#![deny(missing_docs)]
