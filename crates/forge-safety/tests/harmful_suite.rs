//! The harmful-source suite on the real tabular data (runs with FORGE_REAL_MODEL_TESTS=1, as CI
//! does): the gate blocks every trial where transfer hurts the held-out target and blocks no
//! trial where it helps; the table in docs/safety-harmful-suite.md is the one this run produces.

#[path = "../examples/common/suite.rs"]
mod suite;

use forge_safety::Verdict;
use suite::{Kind, Truth};

#[test]
fn gate_blocks_harm_and_lets_help_through() {
    if std::env::var("FORGE_REAL_MODEL_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set FORGE_REAL_MODEL_TESTS=1 to run the harmful-source suite");
        return;
    }
    let rows = suite::run().unwrap();
    for r in &rows {
        match r.truth {
            Truth::Hurts => assert_eq!(
                r.verdict,
                Verdict::Block,
                "not blocked although transfer hurts: {r:?}"
            ),
            Truth::Helps => assert_ne!(
                r.verdict,
                Verdict::Block,
                "blocked although transfer helps: {r:?}"
            ),
            Truth::Negligible => {}
        }
    }
    // The harmful constructions really are harmful, and the benign splits give helpful trials.
    let harmful_hurt = rows
        .iter()
        .filter(|r| r.kind == Kind::Harmful && r.truth == Truth::Hurts)
        .count();
    let harmful = rows.iter().filter(|r| r.kind == Kind::Harmful).count();
    assert!(harmful >= 6 * suite::SEEDS.len());
    assert_eq!(harmful_hurt, harmful, "a harmful case did not hurt");
    assert!(rows
        .iter()
        .any(|r| r.kind == Kind::Benign && r.truth == Truth::Helps));
    // docs/ holds this run's confusion table.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/safety-harmful-suite.md"
    ))
    .expect("docs/safety-harmful-suite.md (run the harmful_suite example)");
    assert!(
        doc.contains(&suite::confusion_markdown(&rows)),
        "docs/safety-harmful-suite.md is stale"
    );
}
