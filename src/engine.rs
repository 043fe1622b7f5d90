//! `Runtime`: the process-wide wasmtime Engine, the compiled guest Module and
//! its InstancePre, built once per configuration and shared by every Host.
//!
//! Compiling the guest with Cranelift takes seconds, so the compiled code is
//! cached on disk, keyed by the module's SHA-256 and the engine's
//! compatibility hash. A cache file carries the SHA-256 of its own contents
//! and is only deserialized when that matches, so a torn or truncated file
//! is recompiled. The checksum cannot tell who wrote the file, and loading
//! compiled code is running it: the directory is created private (0700),
//! and a file that another user owns or that others may write is ignored.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel, PoolingAllocationConfig,
    ProfilingStrategy,
};

use crate::error::Error;
use crate::guest::CallMode;
use crate::guest::abi::{IMPORT_MODULE, VFS_METHODS};
use crate::guest::exports::ExportIndex;
use crate::guest::watchdog;
use crate::guest::imports;
use crate::state::ActorState;

/// The guest module, checked against wasm/wasqlite.wasm.sha256 by build.rs.
pub(crate) const MODULE: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/wasm/wasqlite.wasm"));

/// SHA-256 of the embedded guest module (wasm/wasqlite.wasm), hex.
pub const MODULE_SHA256: &str = env!("WASQLITE_MODULE_SHA256");

/// Where compiled guest code is cached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum CodeCache {
    /// `$WASQLITE_CACHE_DIR`, else `$XDG_CACHE_HOME/wasqlite`, else
    /// `$HOME/.cache/wasqlite`; no cache when none is set.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// Compile at every process start.
    Disabled,
}

impl CodeCache {
    fn dir(&self) -> Option<PathBuf> {
        match self {
            CodeCache::Dir(dir) => Some(dir.clone()),
            CodeCache::Disabled => None,
            CodeCache::Default => std::env::var_os("WASQLITE_CACHE_DIR")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("wasqlite")))
                .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/wasqlite"))),
        }
    }
}

/// How the engine allocates instances.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// Use wasmtime's pooling allocator, with room for this many awake
    /// actors at once (the default, [`DEFAULT_POOL_SLOTS`]); `None`
    /// allocates each instance on demand, with no limit but slower wakes.
    pub pooling: Option<u32>,
    /// With pooling: how much of a slot's linear memory stays mapped after
    /// its actor sleeps. The next actor in the slot then finds those pages
    /// resident, restored in place by copying back only the pages the last
    /// one dirtied, instead of taking a page fault on each (and, across
    /// cores, a TLB-flush interrupt for each page released). Memory past
    /// this size is released. The pages belong to the slot, not the actor:
    /// the pool keeps resident what its busiest moment touched, at most this
    /// much per slot. 0 releases everything at sleep.
    pub keep_resident: usize,
    /// Largest linear memory one actor may grow to, in bytes.
    pub max_memory: usize,
    /// Map linear memory initial images copy-on-write.
    pub memory_init_cow: bool,
    /// Where compiled code is cached.
    pub code_cache: CodeCache,
    /// Compile the guest with epoch checks, which is what lets a call be
    /// stopped at its deadline or by an `InterruptHandle` (and, on a
    /// fiber, yield). They cost about a tenth of the guest's speed on
    /// CPU-bound SQL (BENCHMARKS.md). `false` is for trusted SQL only: calls
    /// then run to their end, so `Limits::call_timeout` must be `None`.
    pub interruptible: bool,
}

/// Awake actors one process can hold with the default configuration.
pub const DEFAULT_POOL_SLOTS: u32 = 1024;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pooling: Some(DEFAULT_POOL_SLOTS),
            keep_resident: 1 << 20,
            max_memory: 256 << 20,
            memory_init_cow: true,
            code_cache: CodeCache::Default,
            interruptible: true,
        }
    }
}

/// Engine, module and pre-linked instance template for one configuration.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    /// The module linked with imports that await the KV on a fiber.
    pub(crate) fiber: InstancePre<ActorState>,
    /// The module linked with imports that poll the KV once, for direct calls.
    pub(crate) direct: InstancePre<ActorState>,
    pub(crate) exports: ExportIndex,
    /// Whether the code came from the disk cache.
    pub(crate) loaded_from_cache: bool,
}

impl Runtime {
    /// The shared runtime for `config`, built on first use.
    pub(crate) fn get(config: &EngineConfig) -> Result<Arc<Runtime>, Error> {
        static RUNTIMES: OnceLock<Mutex<HashMap<EngineConfig, Arc<Runtime>>>> = OnceLock::new();
        let mut runtimes = RUNTIMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = runtimes.get(config) {
            return Ok(rt.clone());
        }
        let rt = Arc::new(Runtime::build(config)?);
        runtimes.insert(config.clone(), rt.clone());
        Ok(rt)
    }

    fn build(config: &EngineConfig) -> Result<Runtime, Error> {
        let mut wasm_config = Config::new();
        wasm_config.cranelift_opt_level(OptLevel::Speed);
        wasm_config.memory_init_cow(config.memory_init_cow);
        // Every Store's calls are watched from epoch ticks (guest::watchdog).
        wasm_config.epoch_interruption(config.interruptible);
        // A trap reaches users as one line; the host recovers by rebuilding
        // the instance, and a wasm backtrace would tell them nothing.
        wasm_config.wasm_backtrace_max_frames(None);
        // `perf` can name the guest's functions from /tmp/perf-PID.map, or
        // with `jitdump`, annotate their machine code (`perf inject --jit`).
        match std::env::var("WASQLITE_PERF_MAP").as_deref() {
            Ok("jitdump") if cfg!(feature = "jitdump") => {
                wasm_config.profiler(ProfilingStrategy::JitDump);
            }
            Ok(_) => {
                wasm_config.profiler(ProfilingStrategy::PerfMap);
            }
            Err(_) => {}
        }
        if let Some(slots) = config.pooling {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_memories(slots).total_tables(slots).total_core_instances(slots).total_stacks(slots);
            pool.max_memory_size(config.max_memory);
            // The kernel's PAGEMAP_SCAN (Linux 6.7+) finds the pages an actor
            // dirtied, so a sleep copies back only those; without it wasmtime
            // falls back to resetting all of keep_resident.
            pool.pagemap_scan(Enabled::Auto);
            pool.linear_memory_keep_resident(config.keep_resident);
            pool.table_keep_resident(config.keep_resident);
            wasm_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm_config).map_err(|e| Error::Engine(format!("creating the engine: {e}")))?;
        // The ticker also times KV operations, which every engine needs.
        watchdog::tick(config.interruptible.then_some(&engine))?;
        let (module, loaded_from_cache) = load_or_compile(&engine, config.code_cache.dir().as_deref())?;
        check_imports(&module)?;
        let link = |mode| {
            let mut linker = Linker::new(&engine);
            imports::add_to_linker(&mut linker, mode).map_err(|e| Error::Engine(format!("defining imports: {e}")))?;
            linker.instantiate_pre(&module).map_err(|e| Error::Engine(format!("linking the guest module: {e}")))
        };
        let fiber = link(CallMode::Fiber)?;
        let direct = link(CallMode::Direct)?;
        let exports = ExportIndex::new(&module)?;
        Ok(Runtime { engine, fiber, direct, exports, loaded_from_cache })
    }
}

/// The guest may import the relay VFS methods and nothing else: no WASI,
/// no clock or randomness of its own, no way out of its sandbox.
fn check_imports(module: &Module) -> Result<(), Error> {
    for import in module.imports() {
        if import.module() != IMPORT_MODULE || !VFS_METHODS.contains(&import.name()) {
            return Err(Error::Engine(format!(
                "the guest module imports {}::{}, which is not part of the wasqlite ABI",
                import.module(),
                import.name()
            )));
        }
    }
    Ok(())
}

/// What every cache file of this module and engine is named by; the file's
/// checksum follows it (`{stem}-{crc32:08x}.cwasm`).
///
/// The checksum is there for accidents (a torn or rotted file), which a
/// CRC-32 catches. It is no defence against someone who can write the
/// file, and neither would a cryptographic hash be, since they could
/// rewrite it too: that is what `owned_privately` is for. It lives in the
/// name so that the file is exactly what `Module::serialize` wrote, which
/// wasmtime can map instead of read and copy (a one-shot command loads these
/// 5-6 MB at every start), and so that one rename publishes both.
fn cache_stem(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasqlite-{}-{:016x}", &MODULE_SHA256[..16], hasher.finish())
}

/// The compiled module, from the cache when a valid entry exists.
fn load_or_compile(engine: &Engine, dir: Option<&Path>) -> Result<(Module, bool), Error> {
    let stem = cache_stem(engine);
    if let Some(dir) = dir
        && let Some(module) = load_cached(engine, dir, &stem)
    {
        return Ok((module, true));
    }
    let module = Module::new(engine, MODULE).map_err(|e| Error::Engine(format!("compiling the guest module: {e}")))?;
    if let Some(dir) = dir
        && let Err(e) = store_cached(&module, dir, &stem)
    {
        tracing::warn!("not caching compiled guest code in {}: {e}", dir.display());
    }
    Ok((module, false))
}

/// The first cache file for `stem` in `dir` that is private and whole.
fn load_cached(engine: &Engine, dir: &Path, stem: &str) -> Option<Module> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(crc) = name.to_str().and_then(|n| cache_checksum(n, stem)) else { continue };
        let path = entry.path();
        if let Err(why) = owned_privately(&path) {
            tracing::warn!("ignoring code cache file {}: {why}", path.display());
            continue;
        }
        let Some(file) = open_verified(&path, crc) else {
            tracing::warn!("ignoring corrupt code cache file {}", path.display());
            continue;
        };
        // SAFETY: the file is exactly what `Module::serialize` wrote for an
        // engine with the same compatibility hash (part of its name), as the
        // checksum just read through this same open file shows; wasmtime
        // also checks its own header. The file is mapped, not copied: it is
        // replaced only by rename, never rewritten in place.
        match unsafe { Module::deserialize_open_file(engine, file) } {
            Ok(module) => return Some(module),
            Err(e) => tracing::warn!("ignoring code cache file {}: {e}", path.display()),
        }
    }
    None
}

/// The checksum in a cache file's name, if `name` is one for `stem`.
fn cache_checksum(name: &str, stem: &str) -> Option<u32> {
    let hex = name.strip_prefix(stem)?.strip_prefix('-')?.strip_suffix(".cwasm")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// The file at `path`, open, if its contents have checksum `crc`.
///
/// The contents are checked through a read-only mapping, which reads the
/// page cache's pages where they are; reading them into a buffer first was
/// a sixth of a one-shot command's time.
#[cfg(unix)]
fn open_verified(path: &Path, crc: u32) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok().filter(|&len| len > 0)?;
    // SAFETY: a new private read-only mapping of `len` bytes of an open
    // regular file (`owned_privately` checked the path), read only here and
    // unmapped before returning. Cache files are replaced by rename, never
    // truncated in place, so every mapped page stays backed while it is read.
    unsafe {
        let at = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0);
        if at == libc::MAP_FAILED {
            return None;
        }
        let sum = crc32fast::hash(std::slice::from_raw_parts(at.cast::<u8>(), len));
        libc::munmap(at, len);
        (sum == crc).then_some(file)
    }
}

#[cfg(not(unix))]
fn open_verified(path: &Path, crc: u32) -> Option<std::fs::File> {
    let bytes = std::fs::read(path).ok()?;
    (!bytes.is_empty() && crc32fast::hash(&bytes) == crc).then(|| std::fs::File::open(path).ok()).flatten()
}

/// Whether a cache file may be trusted: owned by this user and writable by
/// no one else. A file that is missing fails here too, harmlessly.
#[cfg(unix)]
fn owned_privately(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.uid() != me {
        return Err(format!("owned by uid {}, not this user ({me})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("writable by others (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}

#[cfg(not(unix))]
fn owned_privately(_path: &Path) -> Result<(), String> {
    Ok(())
}

fn store_cached(module: &Module, dir: &Path, stem: &str) -> std::io::Result<()> {
    let payload = module.serialize().map_err(std::io::Error::other)?;
    let path = dir.join(format!("{stem}-{:08x}.cwasm", crc32fast::hash(&payload)));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        builder.mode(0o700);
        file.mode(0o600);
    }
    builder.create(dir)?;
    // Write then rename, so concurrent processes never read a partial file.
    let tmp = dir.join(format!(".{}.{}", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::io::Write::write_all(&mut file.open(&tmp)?, &payload)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod checksum_tests {
    use super::{cache_checksum, open_verified};

    #[test]
    fn the_checksum_is_read_from_a_cache_files_name() {
        let stem = "wasqlite-0123456789abcdef-fedcba9876543210";
        assert_eq!(cache_checksum(&format!("{stem}-0badf00d.cwasm"), stem), Some(0x0bad_f00d));
        for other in [
            format!("{stem}-c32.cwasm"),
            format!("{stem}-0badf00d.cwasm.tmp"),
            format!("{stem}-0badf00d0.cwasm"),
            format!("{stem}0badf00d.cwasm"),
            format!(".{stem}-0badf00d.cwasm.123"),
            "wasqlite-0123456789abcdef-0000000000000000-0badf00d.cwasm".to_owned(),
        ] {
            assert_eq!(cache_checksum(&other, stem), None, "{other}");
        }
    }

    /// Any flipped bit, a truncation or an empty file is refused.
    #[test]
    fn a_damaged_cache_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("code.cwasm");
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let crc = crc32fast::hash(&payload);
        std::fs::write(&path, &payload).unwrap();
        assert!(open_verified(&path, crc).is_some());
        for bit in (0..payload.len() * 8).step_by(payload.len() * 8 / 50) {
            let mut damaged = payload.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &damaged).unwrap();
            assert!(open_verified(&path, crc).is_none(), "bit {bit} flipped");
        }
        std::fs::write(&path, &payload[..payload.len() - 1]).unwrap();
        assert!(open_verified(&path, crc).is_none());
        std::fs::write(&path, b"").unwrap();
        assert!(open_verified(&path, crc).is_none());
        assert!(open_verified(&dir.path().join("missing"), crc).is_none());
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::owned_privately;

    /// A cache file others can write is not loaded, whatever its checksum.
    #[test]
    fn only_private_cache_files_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("code.cwasm");
        std::fs::write(&file, b"x").unwrap();
        for (mode, trusted) in [(0o600, true), (0o644, true), (0o664, false), (0o666, false), (0o602, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(owned_privately(&file).is_ok(), trusted, "mode {mode:o}: {:?}", owned_privately(&file));
        }
        let link = dir.path().join("link.cwasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(owned_privately(&link).is_err(), "a symbolic link is not followed");
        assert!(owned_privately(&dir.path().join("missing")).is_err());
    }
}
