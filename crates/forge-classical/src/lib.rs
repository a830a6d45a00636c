//! forge-classical (under construction).
#![deny(missing_docs)]
