#!/usr/bin/env bash
# Regenerate the dev / test lock of one Python version: requirements/dev-py<X.Y>.txt (`make lock` runs it for each
# supported version). The resolution is pip's own (pip-tools' pip-compile drives pip's resolver, with this machine's
# pip configuration), every package pinned with the hashes of its files, so `make test` installs exactly this set.
#
#   scripts/lock.sh python3.12                  # newest versions setup.py allows
#   scripts/lock.sh python3.11 --upgrade-package transformers==5.24.0   # move one package, keep the rest
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(scripts/find_python.sh "${1:?usage: scripts/lock.sh PYTHON [pip-compile options]}")
shift
VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
TOOLS=.venv-lock/py$VERSION
OUT=requirements/dev-py$VERSION.txt
PIP_TOOLS=pip-tools==7.7.0   # the lock's own tool, pinned
if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --upgrade pip "$PIP_TOOLS"
fi
# Without --upgrade-package, resolve from scratch (the newest allowed versions); with it, keep the other pins.
UPGRADE=--upgrade
for arg in "$@"; do case "$arg" in --upgrade-package*|-P) UPGRADE= ;; esac; done
echo "locking the dev set for Python $VERSION into $OUT" >&2
CUSTOM_COMPILE_COMMAND="make lock" "$TOOLS/bin/pip-compile" --quiet $UPGRADE \
    --extra dev --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    --output-file "$OUT" "$@" setup.py requirements/lock.in
