#!/usr/bin/env bash
# Print the path of a Python interpreter given as a command or path (`python3.12`, `/usr/bin/python3`).
# A pyenv shim whose version is installed but not selected (`pyenv: python3.12: command not found`) is resolved
# to that installed version, so `make test PYTHON=python3.12` works wherever pyenv has a 3.12.
set -uo pipefail
want=${1:?usage: scripts/find_python.sh PYTHON}
if path=$("$want" -c 'import sys; print(sys.executable)' 2>/dev/null) && [ -n "$path" ]; then
    echo "$path"
    exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
    version=$(pyenv whence "$want" 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ] && [ -x "$(pyenv root)/versions/$version/bin/$want" ]; then
        echo "$(pyenv root)/versions/$version/bin/$want"
        exit 0
    fi
fi
echo "Python interpreter '$want' not found: install it, or pass PYTHON=/path/to/python (tested: python3.11, python3.12)" >&2
exit 1
