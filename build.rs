//! Embeds the committed guest module, wasm/wasqlite.wasm, after checking it
//! against wasm/wasqlite.wasm.sha256. Building the crate needs no wasm
//! toolchain; wasm/build.sh rebuilds the module from vfs/.

use sha2::{Digest, Sha256};

fn main() {
    let module = "wasm/wasqlite.wasm";
    let sum_file = "wasm/wasqlite.wasm.sha256";
    println!("cargo:rerun-if-changed={module}");
    println!("cargo:rerun-if-changed={sum_file}");
    let bytes = std::fs::read(module).unwrap_or_else(|e| panic!("reading {module}: {e}"));
    let actual: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let recorded = std::fs::read_to_string(sum_file).unwrap_or_else(|e| panic!("reading {sum_file}: {e}"));
    let recorded = recorded.split_whitespace().next().unwrap_or_default();
    if actual != recorded {
        panic!("{module} has SHA-256 {actual} but {sum_file} records {recorded}; run wasm/build.sh");
    }
    println!("cargo:rustc-env=WASQLITE_MODULE_SHA256={actual}");
}
