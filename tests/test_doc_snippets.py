"""Every fenced ```python block of README.md and docs/*.md runs as written, offline, on tiny models.

Each snippet is one test case, named `<file>:<line of the fence>`. The snippets of one file run in one
namespace, in file order (a later snippet may use an earlier one's names; running one case alone runs the
earlier snippets of its file first), in a working directory of their own where the paths the docs name
(`demo_output/waypoint-tiny`, `outputs/waypoint_tiny`, ...) hold tiny models and real-format files written
by the library's own builders; for docs/serving.md a tiny policy server listens on the port it names, and the
observation its comments describe is in the namespace (`SETUP` below).

A snippet that cannot run here (a Hub download of a real checkpoint, a GPU, the LIBERO simulator, minutes of
training) carries a marker on the line before its fence, and the reason is the skip reason:

    <!-- snippet: skip (needs the Hub: HuggingFaceTB/SmolVLM-Base) -->
    ```python
    ...
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# openpi-client 0.1.2 (docs/serving.md's snippet) calls websockets' connect() the deprecated way.
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*snippet:\s*(?P<directive>.*?)\s*-->$")
SKIP = re.compile(r"^skip \((?P<reason>.+)\)$")


@dataclass
class Snippet:
    """One fenced python block: `file` (relative to the repository), `line` (1-based, of the opening fence),
    `source` and `skip` (the marker's reason, or None)."""

    file: str
    line: int
    source: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def extract_snippets(path: Path) -> list[Snippet]:
    """The ```python blocks of a markdown file, each with the skip reason of the marker before it."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{rel}:{i + 1}: a fenced block that is never closed")
        if fence == "```python":
            previous = lines[i - 1].strip() if i > 0 else ""
            skip = None
            marker = MARKER.match(previous)
            if marker:
                match = SKIP.match(marker["directive"])
                if match is None:
                    raise ValueError(
                        f"{rel}:{i}: unknown snippet marker {previous!r}; the form is <!-- snippet: skip (reason) -->"
                    )
                skip = match["reason"]
            snippets.append(Snippet(rel, i + 1, "\n".join(lines[i + 1 : end]) + "\n", skip))
        i = end + 1
    return snippets


SNIPPETS = [s for path in DOC_FILES for s in extract_snippets(path)]


# ------------------------------------------------------------------------------------------- fixtures
def _tiny_waypoint(directory: Path) -> None:
    """A tiny waypoint model + processor where the docs name a trained one (`make demo`, `train waypoint`)."""
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
    from hf_vlmdrive.models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

    config = WaypointVLMConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        head_hidden_sizes=[32, 32],
    )
    WaypointVLMModel(config).save_pretrained(directory)
    WaypointVLMProcessor.from_config(config).save_pretrained(directory)


def _readme(work: Path) -> None:
    _tiny_waypoint(work / "demo_output" / "waypoint-tiny")


def _waymo(work: Path) -> None:
    from hf_vlmdrive.data.synthetic.waymo import write_synthetic_e2ed

    # `make demo`'s files hold the FRONT camera; the real dataset's stand-in holds the three front cameras.
    small = dict(num_samples=3, width=64, height=48, progress=False)
    write_synthetic_e2ed(work / "demo_output" / "wod_e2e", split="validation", camera_names=("FRONT",), **small)
    write_synthetic_e2ed(work / "wod_e2e", split="validation", **small)
    write_synthetic_e2ed(work / "wod_e2e", split="training", **small)
    _tiny_waypoint(work / "outputs" / "waypoint_tiny")


def _serving(work: Path) -> dict[str, Any]:
    """The server the snippets connect to (`hf-vlmdrive serve` on a tiny random GeoVLA, port 10093, as the doc
    says) and the observation their comments describe (`img`, `wrist`, `state`, `task_description`, `obs`)."""
    import socket

    import numpy as np

    from hf_vlmdrive.serving import load_policy
    from hf_vlmdrive.serving.server import PolicyServer
    from hf_vlmdrive.testing.tiny_geovla import save_tiny_geovla

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 10093)) == 0:
            pytest.skip("port 10093, which the serving snippets name, is in use")
    server = PolicyServer(load_policy(save_tiny_geovla(work / "tiny_geovla"), device="cpu"), host="127.0.0.1",
                          port=10093).start()
    rng = np.random.default_rng(0)
    observation = {
        "img": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "state": rng.normal(size=8),
        "task_description": "put the bowl on the plate",
    }
    obs = {"observation/image": observation["img"], "observation/wrist_image": observation["wrist"],
           "observation/state": observation["state"], "prompt": observation["task_description"]}
    return {**observation, "obs": obs, "_cleanup": server.stop}


# A setup prepares the working directory; it may return names for the namespace (`_cleanup`: called at the end).
SETUP: dict[str, Callable[[Path], dict[str, Any] | None]] = {
    "README.md": _readme, "docs/serving.md": _serving, "docs/waymo.md": _waymo,
}


@dataclass
class _FileRun:
    work: Path
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__doc_snippet__"})
    done: dict[int, bool] = field(default_factory=dict)  # line -> ran without error


_RUNS: dict[str, _FileRun] = {}


def _run(snippet: Snippet, state: _FileRun) -> None:
    # Padding keeps tracebacks on the markdown file's own line numbers.
    code = compile("\n" * snippet.line + snippet.source, snippet.id, "exec")
    state.done[snippet.line] = False
    exec(code, state.namespace)
    state.done[snippet.line] = True
    for name, expression in CHECKS.get(snippet.file, []):
        if re.search(rf"^\s*{name}\s*=", snippet.source, flags=re.M):
            assert eval(expression, state.namespace), f"{snippet.id}: {expression} does not hold"


# What a snippet's comments promise, checked after the snippet that assigns the name: (name, expression).
CHECKS: dict[str, list[tuple[str, str]]] = {
    "README.md": [
        ("waypoints", "tuple(waypoints.shape) == (1, 20, 2)"),
        ("scores", "(round(scores['ade'], 3), round(scores['fde'], 3)) == (0.3, 0.3)"),
    ],
    "docs/serving.md": [("actions", "tuple(actions.shape) == (8, 7) and str(actions.dtype) == 'float32'")],
    "docs/waymo.md": [
        ("ds", "len(ds) == 3 and stats.summary().startswith('read 3 frame(s), skipped 0')"),
        ("ds3", "len(ds3[0]['images']) == 3"),
        ("model", "not any('lora_' in name for name, _ in model.named_parameters())"),
    ],
}


@pytest.fixture(autouse=True)
def _datasets_cache_in_tmp(monkeypatch, tmp_path_factory):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf_datasets_cache")
    # websockets >= 15 connects through *_proxy variables unless no_proxy covers the host (docs/serving.md).
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture(scope="module", autouse=True)
def _cleanup_setups():
    yield
    for state in _RUNS.values():
        cleanup = state.namespace.get("_cleanup")
        if cleanup is not None:
            cleanup()
    _RUNS.clear()


def test_every_snippet_is_found_and_every_marker_belongs_to_one():
    """The extractor sees the blocks (a renamed fence or a stray marker would silently drop tests)."""
    assert len(SNIPPETS) >= 10
    for path in DOC_FILES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if MARKER.match(line.strip()):
                following = lines[i + 1].strip() if i + 1 < len(lines) else ""
                assert following == "```python", f"{path.name}:{i + 1}: a snippet marker not followed by ```python"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, tmp_path_factory, monkeypatch):
    if snippet.skip:
        pytest.skip(snippet.skip)
    state = _RUNS.get(snippet.file)
    if state is None:
        work = tmp_path_factory.mktemp(re.sub(r"\W", "_", snippet.file))
        monkeypatch.chdir(work)
        state = _FileRun(work)
        if snippet.file in SETUP:
            state.namespace.update(SETUP[snippet.file](work) or {})
        _RUNS[snippet.file] = state
    monkeypatch.chdir(state.work)
    for earlier in SNIPPETS:
        if earlier.file != snippet.file or earlier.line >= snippet.line or earlier.skip:
            continue
        if earlier.line not in state.done:
            _run(earlier, state)
        if not state.done[earlier.line]:
            pytest.fail(f"{earlier.id}, which {snippet.id} builds on, failed")
    _run(snippet, state)
