#!/usr/bin/env bash
# Rebuild the guest module wasm/wasqlite.wasm from vfs/*.c and the SQLite
# amalgamation bundled in the pinned libsqlite3-sys crate.
#
#   wasm/build.sh            rebuild and rewrite wasqlite.wasm + .sha256
#   wasm/build.sh --check    rebuild into a scratch dir and fail if the bytes
#                            differ from the committed module
#
# Needs (Debian): clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32,
# binaryen (wasm-opt, version 108), and cargo (the pre-initializer is
# wasm/preinit/).
# The build is byte-reproducible: the output always has the same file name
# (wasm-ld records it in the name section) and -ffile-prefix-map keeps
# absolute paths out of the module.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
clang="${CLANG:-clang-19}"
wasm_opt="${WASM_OPT:-wasm-opt}"
# Another wasm-opt version optimizes differently, and the bytes would not
# match the committed module.
wasm_opt_version="version 108"
if ! "$wasm_opt" --version 2>/dev/null | grep -q "$wasm_opt_version"; then
  echo "build.sh: needs wasm-opt $wasm_opt_version (Debian: apt-get install binaryen); found: $("$wasm_opt" --version 2>&1 | head -1)" >&2
  exit 1
fi

mode="${1:-write}"

# Locate sqlite3.c inside the libsqlite3-sys version pinned by Cargo.lock.
sqlite_dir="$(cd "$repo" && cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
pkgs = [p for p in meta["packages"] if p["name"] == "libsqlite3-sys"]
if len(pkgs) != 1:
    sys.exit("expected exactly one libsqlite3-sys in Cargo.lock, found %d" % len(pkgs))
print(os.path.join(os.path.dirname(pkgs[0]["manifest_path"]), "sqlite3"))
')"
[ -f "$sqlite_dir/sqlite3.c" ] || { echo "build.sh: no sqlite3.c in $sqlite_dir" >&2; exit 1; }

mapfile -t flags < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/flags")

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

common=(
  --target=wasm32-wasi --sysroot=/usr
  -ffile-prefix-map="$sqlite_dir"=sqlite
  -ffile-prefix-map="$repo"=wasqlite
  -I "$sqlite_dir" -I "$repo/vfs"
  "${flags[@]}"
)

"$clang" "${common[@]}" -c "$sqlite_dir/sqlite3.c" -o "$work/sqlite3.o" &
"$clang" "${common[@]}" -Wall -Wextra -Werror -c "$repo/vfs/relay_vfs.c" -o "$work/relay_vfs.o"
"$clang" "${common[@]}" -Wall -Wextra -Werror -c "$repo/vfs/sql_api.c" -o "$work/sql_api.o"
wait

# A reactor. The stack comes first so that an overflow traps instead of
# corrupting data.
mkdir -p "$work/raw"
(cd "$work/raw" && "$clang" --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor \
  -Wl,--stack-first -Wl,-z,stack-size=1048576 -Wl,--strip-debug \
  ../sqlite3.o ../relay_vfs.o ../sql_api.o -o wasqlite.wasm)

# Pre-initialize: run wasqlite_preinit (reactor _initialize, then
# sqlite3_initialize) under wizer and keep the resulting memory image, so
# that no wake repeats that work.
(cd "$repo" && cargo run --quiet --locked -p wasqlite-preinit -- \
  "$work/raw/wasqlite.wasm" "$work/preinit.wasm")

# Binaryen's optimizer over the whole pre-initialized module, after clang's:
# 8% off a bulk insert and 2 us off a wake (BENCHMARKS.md). -g keeps the
# function names, which profiles need.
"$wasm_opt" -O3 -g --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals "$work/preinit.wasm" -o "$work/wasqlite.wasm"

sum="$(cd "$work" && sha256sum wasqlite.wasm)"
case "$mode" in
  write)
    cp "$work/wasqlite.wasm" "$here/wasqlite.wasm"
    echo "$sum" > "$here/wasqlite.wasm.sha256"
    echo "wrote wasm/wasqlite.wasm ($(stat -c %s "$here/wasqlite.wasm") bytes): $sum"
    ;;
  --check)
    if cmp -s "$work/wasqlite.wasm" "$here/wasqlite.wasm"; then
      echo "wasm/wasqlite.wasm matches its source: $sum"
    else
      echo "wasm/wasqlite.wasm differs from a rebuild of vfs/ (rebuilt: $sum," \
           "committed: $(cat "$here/wasqlite.wasm.sha256")); run wasm/build.sh" >&2
      exit 1
    fi
    ;;
  *) echo "usage: wasm/build.sh [--check]" >&2; exit 2 ;;
esac
