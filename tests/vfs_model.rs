//! Property test: random file operations through the host VFS agree with a
//! model of byte files at every step (the same check the `vfs_ops` fuzz
//! target runs for hours).

use proptest::prelude::*;
use wasqlite::KvLimits;
use wasqlite::simulation::vfs_model::{check, decode};

fn run(bytes: &[u8], limits: KvLimits) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(check(&decode(bytes), limits))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn vfs_agrees_with_the_model_under_rivet_limits(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        run(&bytes, KvLimits::RIVET).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn vfs_agrees_with_the_model_without_limits(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        run(&bytes, KvLimits::UNLIMITED).map_err(TestCaseError::fail)?;
    }
}

/// The model runs the xWrite import's own steps, early flush included: a
/// write past its four-chunk threshold, never synced, is in the KV after a
/// restart, and the model must expect exactly that.
#[test]
fn an_early_flush_is_durable_and_the_model_expects_it() {
    use wasqlite::simulation::vfs_model::VfsOp;
    use wasqlite::vfs::layout::{CHUNK_SIZE, FileTag};
    let ops = [
        VfsOp::Open(FileTag::Journal),
        VfsOp::Write { tag: FileTag::Journal, offset: 0, len: 5 * CHUNK_SIZE, fill: 7 },
        VfsOp::Reopen,
        VfsOp::Read { tag: FileTag::Journal, offset: 0, len: 5 * CHUNK_SIZE },
    ];
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(check(&ops, KvLimits::RIVET)).unwrap();
}
