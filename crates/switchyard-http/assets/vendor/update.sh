#!/usr/bin/env bash
# Refreshes the vendored graph layout library from the npm registry.
# npm checks the tarball against the registry's integrity hash; the file
# is copied unchanged, so its sha256 can be compared with the package's.
#   bash crates/switchyard-http/assets/vendor/update.sh [VERSION]
set -euo pipefail
version=${1:-3.1.3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@dagrejs/dagre@$version" >/dev/null && tar xzf dagrejs-dagre-"$version".tgz)
cp "$tmp/package/dist/dagre.min.js" "$here/dagre.min.js"
cp "$tmp/package/LICENSE" "$here/dagre.LICENSE"
sum=$(sha256sum "$here/dagre.min.js" | cut -d' ' -f1)
sed -i "s/^version: .*/version: $version/; s/^sha256: .*/sha256: $sum/" "$here/VENDOR"
echo "dagre $version: $sum"
