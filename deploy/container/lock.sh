#!/usr/bin/env bash
# Pin the image's Python packages, with hashes: tracker's runtime dependencies from
# pyproject.toml plus setuptools (to build tracker itself without network), resolved for
# the image's Python (3.13, Linux x86_64, wheels only). Run after changing dependencies
# in pyproject.toml; tests/deploy/test_deploy.py fails while this file is out of date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
"$root/scripts/bootstrap"
printf 'setuptools>=77\n' | "$root/.venv/bin/uv" pip compile -q \
  pyproject.toml - \
  --python-version 3.13 \
  --python-platform x86_64-manylinux_2_28 \
  --only-binary :all: \
  --generate-hashes \
  --custom-compile-command "deploy/container/lock.sh" \
  -o deploy/container/requirements.txt
