//! Pre-initializes the guest module at build time (wasm/build.sh): runs its
//! `wasqlite_preinit` export under wizer and writes a module whose memory
//! image already holds SQLite's global state, so no wake pays for it.
//!
//!     cargo run -p wasqlite-preinit -- IN.wasm OUT.wasm

use anyhow::{Context, Result, bail};
use wasmtime::{Config, Engine, Linker, Store};
use wasmtime_wizer::Wizer;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = &args[..] else {
        bail!("usage: wasqlite-preinit IN.wasm OUT.wasm");
    };
    let wasm = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let engine = Engine::new(&Config::new()).map_err(|e| anyhow::anyhow!("creating the engine: {e}"))?;
    let mut store = Store::new(&engine, ());
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let snapshot = runtime.block_on(Wizer::new().init_func("wasqlite_preinit").run(&mut store, &wasm, async |store, module| {
        // Initialization must not touch storage, time or randomness: every
        // import traps, which makes wizer fail loudly if one is called.
        let mut linker = Linker::new(store.engine());
        linker.define_unknown_imports_as_traps(module)?;
        linker.instantiate_async(store, module).await
    }))
    .map_err(|e| anyhow::anyhow!("pre-initializing {input}: {e:?}"))?;
    std::fs::write(output, snapshot).with_context(|| format!("writing {output}"))?;
    Ok(())
}
