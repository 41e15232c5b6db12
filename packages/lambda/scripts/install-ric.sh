#!/usr/bin/env bash
# Installs AWS's Node.js Runtime Interface Client (aws-lambda-ric, the code
# Lambda's Node.js runtime runs) where test/RuntimeInterfaceClient.test.ts
# looks for it: node_modules/.cache/aws-lambda-ric at the workspace root.
#
# Its install scripts build a native part from sources the package bundles
# (curl and aws-lambda-cpp with cmake and make, then a Node-API addon with
# node-gyp): it needs cmake, make, g++ and python3 (Debian: build-essential
# cmake python3), and Node's headers on disk: node-gyp would otherwise
# download them from the Node.js website. The machine's own Node package
# keeps them in /usr/include/node; a Node-API addon built against them loads
# in later Node versions too. About a minute on 2 idle cores.
set -euo pipefail
VERSION=4.0.2
root="$(cd "$(dirname "$0")/../../.." && pwd)"
target="$root/node_modules/.cache/aws-lambda-ric"
node="$root/node_modules/.bin/node"
[ -x "$node" ] || node="$(command -v node)"

missing=()
for tool in cmake make g++ python3; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-ric: missing ${missing[*]} (Debian: apt-get install build-essential cmake python3)" >&2
  exit 1
fi

# Node-API headers: the running Node's own, else the system's (a Node-API
# addon built against any Node ≥ 18's headers loads in later versions).
nodedir="${NODE_HEADERS_DIR:-}"
if [ -z "$nodedir" ]; then
  for candidate in "$(dirname "$(dirname "$("$node" -p process.execPath)")")" /usr/local /usr; do
    if [ -f "$candidate/include/node/node_api.h" ] && [ -f "$candidate/include/node/common.gypi" ]; then
      nodedir="$candidate"
      break
    fi
  done
fi
if [ -z "$nodedir" ]; then
  echo "install-ric: no Node headers (include/node/node_api.h) found; set NODE_HEADERS_DIR" >&2
  exit 1
fi

mkdir -p "$target"
[ -f "$target/package.json" ] || echo '{ "private": true }' >"$target/package.json"
cd "$target"
PATH="$(dirname "$node"):$PATH" npm_config_nodedir="$nodedir" \
  npm install --no-audit --no-fund --no-save --foreground-scripts "aws-lambda-ric@$VERSION" >install.log 2>&1 ||
  { tail -30 install.log >&2; echo "install-ric: npm install failed; full log in $target/install.log" >&2; exit 1; }
[ -f node_modules/aws-lambda-ric/rapid-client.node ] || { echo "install-ric: the native part was not built" >&2; exit 1; }
echo "aws-lambda-ric $VERSION installed in $target (Node headers from $nodedir)"
