#!/usr/bin/env bash
# Installs the libSQL clients that cli/tests/serve_clients.rs drives against
# `wasqlite serve`: the npm @libsql/client and the Python `libsql` wheel
# (the Rust libsql crate's remote mode), both at pinned versions, into DIR.
#
#   scripts/install-test-clients.sh DIR
#   export WASQLITE_TEST_CLIENTS=DIR
#
# DIR/node_modules is for NODE_PATH, DIR/python for PYTHONPATH. Running it
# again with the same versions in place installs nothing.
set -euo pipefail
dir="${1:?usage: scripts/install-test-clients.sh DIR}"
js_version=0.18.0
py_version=0.1.11
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

installed_js="$(node -p "try { require('$dir/node_modules/@libsql/client/package.json').version } catch { '' }" 2>/dev/null || true)"
if [ "$installed_js" != "$js_version" ]; then
  # A package.json of its own keeps npm from climbing to a parent project.
  [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --save-exact "@libsql/client@$js_version" >&2
fi

if ! ls "$dir/python/libsql-$py_version.dist-info" >/dev/null 2>&1; then
  rm -rf "$dir/python"
  python3 -m pip install --quiet --disable-pip-version-check --target "$dir/python" "libsql==$py_version" >&2
fi

echo "@libsql/client $(node -p "require('$dir/node_modules/@libsql/client/package.json').version") in $dir/node_modules"
echo "@libsql/hrana-client $(node -p "require('$dir/node_modules/@libsql/hrana-client/package.json').version")"
echo "libsql (Python) $py_version in $dir/python"
