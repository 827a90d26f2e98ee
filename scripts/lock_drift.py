"""Print how the running environment differs from a lock file (`make test-latest` calls it before the suite).

    python scripts/lock_drift.py requirements/dev-py3.11.txt

One line per package whose installed version is not the locked one, and the packages only one side has.
Exit code 0 always: drift is what the drift check is for; the suite that follows says whether it matters.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    if not pins:
        raise SystemExit(f"{lock}: no `name==version` lines; is it a lock written by `make lock`?")
    return pins


def installed_versions() -> dict[str, str]:
    return {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions() if dist.metadata["Name"]}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    lock = Path(argv[0])
    if not lock.is_file():
        print(f"lock file {lock} not found (run `make lock`)", file=sys.stderr)
        return 2
    pins, have = locked_versions(lock), installed_versions()
    have.pop("hf-vlmdrive", None)
    changed = [(n, pins[n], have[n]) for n in sorted(pins.keys() & have.keys()) if pins[n] != have[n]]
    print(f"drift from {lock}: {len(changed)} package(s) at other versions")
    for name, old, new in changed:
        print(f"  {name}: {old} (lock) -> {new}")
    for label, names in (("not installed here", pins.keys() - have.keys()), ("not in the lock", have.keys() - pins.keys())):
        if names:
            print(f"  {label}: {', '.join(sorted(names))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
