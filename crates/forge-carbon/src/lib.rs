//! forge-carbon (under construction).
#![deny(missing_docs)]
