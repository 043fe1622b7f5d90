//! Replays every input under tests/regressions/<target>/ through the checker
//! of that fuzz target (fuzz/README.md says how inputs get here).

use std::path::Path;

use wasqlite::KvLimits;
use wasqlite::simulation::vfs_model;
use wasqlite::simulation::run_fuzz_input;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn vfs_ops_regressions() {
    for (name, data) in inputs("vfs_ops") {
        let Some((&profile, rest)) = data.split_first() else { continue };
        let limits = if profile & 1 == 0 { KvLimits::RIVET } else { KvLimits::UNLIMITED };
        vfs_model::check(&vfs_model::decode(rest), limits).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn sql_faults_regressions() {
    for (name, data) in inputs("sql_faults") {
        run_fuzz_input(&data).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
