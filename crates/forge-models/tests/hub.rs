//! The Hub path fails fast and clearly without network (one test: it changes the environment).

use forge_models::{ModelError, ModelFiles};
use std::time::Instant;

#[test]
fn hub_fails_fast_offline_with_a_local_folder_hint() {
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HUB_CACHE", tmp.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let t0 = Instant::now();
    let e = ModelFiles::resolve(forge_models::DEFAULT_MODEL).unwrap_err();
    assert!(matches!(e, ModelError::Hub { .. }), "{e}");
    assert!(e.to_string().contains("local folder"), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 1.0);
    // not marked offline, but the endpoint is unreachable: still within a few seconds
    std::env::remove_var("HF_HUB_OFFLINE");
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    let t0 = Instant::now();
    let e = ModelFiles::from_hub("distilbert-base-uncased").unwrap_err();
    assert!(matches!(e, ModelError::Hub { .. }), "{e}");
    assert!(t0.elapsed().as_secs_f64() < 5.0, "took {:?}", t0.elapsed());
}
