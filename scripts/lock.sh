#!/usr/bin/env bash
# Refresh requirements.lock: the full CPU install (dev, neural and queue extras) with hashes.
# torch is pinned to the CPU build (2.13.0+cpu) that this machine kind's pip finds in
# /opt/wheels; without the pin a resolver takes the multi-GB CUDA build from PyPI.
# Needs uv (`pip install uv`). Review the diff, run the tests, commit the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
constraint=$(mktemp)
trap 'rm -f "$constraint"' EXIT
echo "torch==2.13.0+cpu" > "$constraint"
uv pip compile pyproject.toml --extra dev --extra neural --extra queue \
    --find-links /opt/wheels --constraint "$constraint" --generate-hashes \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "scripts/lock.sh" -o requirements.lock
