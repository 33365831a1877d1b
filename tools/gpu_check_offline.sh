#!/usr/bin/env bash
# `make gpu-check` on a GPU machine that reaches no package index: install fernas into the
# machine's python3 (it must have torch) from the kit that `make gpu-kit` packed elsewhere
# (tools/gpu_kit.py), then run benchmarks/gpu_check.py with any arguments given.
#   GPU_KIT=.gpu-kit OFFLINE_PY=python3 bash tools/gpu_check_offline.sh [--from STEP] [--out FILE]
# Relative paths (GPU_KIT, --out) are taken from the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
kit="${GPU_KIT:-.gpu-kit}"
py="${OFFLINE_PY:-python3}"
if [ ! -f "$kit/kit.tar.xz" ]; then
  echo "no $kit/kit.tar.xz: run 'make gpu-kit' where pip reaches an index, and copy $kit/ here" >&2
  exit 2
fi
wheels="$(mktemp -d /tmp/fernas-gpu-kit-XXXXXX)"
trap 'rm -rf "$wheels"' EXIT
# Python's tarfile, not tar: the target may have no xz program.
"$py" -c 'import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))' "$kit/kit.tar.xz" "$wheels"
"$py" -m pip install --quiet --no-index --find-links "$wheels" -e ".[test]"
export RAY_USAGE_STATS_ENABLED=0
"$py" benchmarks/gpu_check.py "$@"
