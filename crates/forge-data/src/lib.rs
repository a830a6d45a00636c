//! forge-data (under construction).
#![deny(missing_docs)]
