#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh installs on a lent GPU machine.
#
# The GPU machine reaches no package registry; its image already has torch, lightning, torchmetrics,
# rich, onnx, onnxruntime (CPU), h5py, numpy, scipy, matplotlib, pandas, pytest. What the project
# needs beyond that travels as wheels in wheels/ (the `carry` list of the device tool), fetched here
# with --no-deps for the machine's Python (3.12, x86-64 manylinux). Versions are pinned to what
# this checkout's venv has, so both machines run the same code.
#
#   bash benchmarks/prepare_gpu_wheels.sh            # -> wheels/ (about 8 MB)
#   DEST=/tmp/w PY_VERSION=3.11 bash benchmarks/prepare_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${DEST:-wheels}
PY_VERSION=${PY_VERSION:-3.12}
PYTHON=${PYTHON:-.venv/bin/python}
# name as pip knows it; kornia_rs is kornia's compiled dependency, docstring_parser and
# typeshed_client are jsonargparse[signatures]'s (the CLI's LightningCLI needs them)
PACKAGES=(snntorch kornia kornia_rs jsonargparse docstring_parser typeshed_client spikingjelly)
FALLBACK_spikingjelly=0.0.0.0.14

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "error: $PYTHON has no pip; set PYTHON=/path/to/python of the project's venv" >&2
    exit 2
fi

specs=()
for name in "${PACKAGES[@]}"; do
    version=$("$PYTHON" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}')
    if [[ -z "$version" ]]; then
        fallback_var="FALLBACK_${name}"
        version=${!fallback_var:-}
    fi
    if [[ "$name" == spikingjelly && "$version" != 0.0.0.0.14 ]]; then
        version=0.0.0.0.14  # the benchmarks are written against this release (v2 needs loguru)
    fi
    specs+=("${name}${version:+==$version}")
done

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
echo "downloading into $DEST/ for CPython $PY_VERSION x86-64: ${specs[*]}"
"$PYTHON" -m pip download --no-deps --only-binary=:all: \
    --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d "$DEST" "${specs[@]}"

# one version of each package, or the --no-deps install on the machine stops
dups=$(ls "$DEST"/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [[ -n "$dups" ]]; then
    echo "error: several versions of: $dups (remove the extra wheels from $DEST)" >&2
    exit 1
fi

# keep the wheels out of commits but let the device tool carry them
if [[ -d .git/info ]] && ! grep -qxF "/$DEST/" .git/info/exclude 2>/dev/null; then
    echo "/$DEST/" >>.git/info/exclude
fi
du -sh "$DEST"
echo "now call the device tool with carry=[\"$DEST\"] and the command: bash benchmarks/gpu_check.sh"
