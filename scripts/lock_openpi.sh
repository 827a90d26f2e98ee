#!/usr/bin/env bash
# Write requirements/openpi-client.txt: openpi-client (the real client the policy server is tested against) at one
# exact version with the hash of its wheel. It pins numpy<2 but works with numpy 2, so it stays out of the
# pip-compile lock and `make test` installs it with --no-deps. OPENPI_CLIENT_VERSION picks another version.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${OPENPI_CLIENT_VERSION:-0.1.2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "openpi-client==$VERSION"
{
    echo "# Written by scripts/lock_openpi.sh (make lock); installed with --no-deps next to requirements/dev-py*.txt."
    printf 'openpi-client==%s' "$VERSION"
    for f in "$tmp"/*; do printf ' \\\n    --hash=sha256:%s' "$(sha256sum "$f" | cut -d' ' -f1)"; done
    echo
} > requirements/openpi-client.txt
echo "wrote requirements/openpi-client.txt (openpi-client $VERSION)" >&2
