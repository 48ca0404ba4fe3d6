//! Every committed fuzz seed (`fuzz/corpus/<target>/`) runs through its target's checks, so a
//! parser regression on a known-hostile input fails the ordinary test run.

use std::path::Path;

use service_tracing_middleware::fuzzing::TARGETS;

#[test]
fn every_seed_of_every_target_passes_its_checks() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let folder = corpus.join(target);
        let entries =
            std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
        let mut seeds = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: seed {} failed", path.display());
            seeds += 1;
        }
        assert!(seeds > 0, "{target} has no seeds");
        replayed += seeds;
    }
    assert!(replayed >= 50, "only {replayed} seeds");
}
