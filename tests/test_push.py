"""`hf-vlmdrive push`: the dry run validates a saved model offline; the upload goes through huggingface_hub's
real HfApi.create_repo / create_branch / upload_folder against a local HTTP server that speaks the few Hub
endpoints they use (create repo, branch, validate-yaml, preupload, commit)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hf_vlmdrive.errors import UserError
from hf_vlmdrive.model_card import write_model_card
from hf_vlmdrive.push import plan_push, push_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny waypoint model saved the way `hf-vlmdrive train waypoint` saves it (weights, processor, card)."""
    from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig, WaypointVLMModel
    from hf_vlmdrive.models.waypoint_vlm.processing_waypoint_vlm import WaypointVLMProcessor

    out = tmp_path_factory.mktemp("push") / "waypoint-tiny"
    model = WaypointVLMModel(WaypointVLMConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        head_hidden_sizes=[16]))
    model.save_pretrained(out)
    WaypointVLMProcessor.from_config(model.config).save_pretrained(out)
    write_model_card(out, model, family="waypoint_vlm", vision_state="frozen", metrics={"ade": 1.5},
                     protocol="ADE in m, 8 samples", datasets=["synthetic:8"], train_data="synthetic:8")
    (out / "training_args.bin").write_bytes(b"pickle")
    (out / "checkpoint-2").mkdir()
    (out / "bvpi_preds.jsonl").write_text("{}\n")
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_dry_run_lists_the_files_and_loads_the_model(model_dir, cli, capsys):
    plan = plan_push(model_dir, "my-org/waypoint-tiny")
    names = [n for n, _ in plan.files]
    assert {"README.md", "config.json", "model.safetensors", "processor_config.json"} <= set(names)
    assert "training_args.bin" not in names and "bvpi_preds.jsonl" not in names
    assert any(item.startswith("checkpoint-2/") for item in plan.left_out)
    assert plan.loaded_as.startswith("WaypointVLMModel") and "WaypointVLMProcessor" in plan.loaded_as
    before = (model_dir / "README.md").read_text()
    assert cli("push", model_dir, "--repo-id", "my-org/waypoint-tiny", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "dry run: nothing uploaded" in out and "training_args.bin (Trainer" in out
    assert (model_dir / "README.md").read_text() == before  # a dry run changes nothing


@pytest.mark.parametrize("case, message", [
    ("missing", "no such directory"),
    ("no_config", "no config.json"),
    ("broken_yaml", "YAML metadata does not parse"),
    ("no_card", "no README.md model card"),
    ("pickle_weights", "pytorch_model.bin is a pickle"),
    ("bad_repo", "ORG/NAME"),
    ("bad_weights", "does not load with the transformers Auto classes"),
])
def test_bad_input_is_a_user_error(model_dir, tmp_path, cli, capsys, case, message):
    folder, repo = _copy(model_dir, tmp_path / "m"), "my-org/m"
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "no_config":
        (folder / "config.json").unlink()
    elif case == "broken_yaml":
        (folder / "README.md").write_text("---\nlicense: [apache-2.0\ntags: {\n---\n# m\n")
    elif case == "no_card":
        (folder / "README.md").unlink()
    elif case == "pickle_weights":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif case == "bad_repo":
        repo = "not a repo id"
    elif case == "bad_weights":
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match=message):
        plan_push(folder, repo)
    assert cli("push", folder, "--repo-id", repo, "--dry-run") == 2
    assert message.split()[0] in capsys.readouterr().err


def test_upload_refuses_offline(model_dir, tmp_path):
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        push_model_dir(_copy(model_dir, tmp_path / "m"), "my-org/m")


class FakeHub(BaseHTTPRequestHandler):
    """The Hub endpoints HfApi.create_repo / create_branch / upload_folder call; records what it was sent."""

    requests: list[tuple[str, str, dict | list]] = []
    files: dict[str, bytes] = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, payload: dict, status: int = 200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server's name)
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self.path.split("?")[0]
        endpoint = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if path.endswith("/commit/" + path.rsplit("/", 1)[-1]) and "/commit/" in path:
            lines = [json.loads(line) for line in raw.decode().splitlines() if line]
            FakeHub.requests.append(("commit", path, lines))
            for item in lines:
                if item["key"] == "file":
                    FakeHub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return self._reply({"commitUrl": f"{endpoint}/my-org/m/commit/{'a' * 40}", "commitOid": "a" * 40})
        payload = json.loads(raw or b"{}")
        FakeHub.requests.append((path.split("/")[-2] if "/branch/" in path or "/preupload/" in path else path,
                                 path, payload))
        if path == "/api/repos/create":
            return self._reply({"url": f"{endpoint}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            return self._reply({})
        if "/preupload/" in path:
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in payload["files"]]})
        if "/branch/" in path:
            return self._reply({})
        return self._reply({"error": f"unknown endpoint {path}"}, 404)


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub.constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeHub.requests, FakeHub.files = [], {}
    # Online, but only towards this local server: the endpoint is passed explicitly.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upload_sends_the_planned_files(model_dir, tmp_path, fake_hub):
    folder = _copy(model_dir, tmp_path / "m")
    plan, url = push_model_dir(folder, "my-org/m", private=True, revision="v1", endpoint=fake_hub, token="hf_test",
                               commit_message="first upload")
    assert url.endswith("/my-org/m/commit/" + "a" * 40)
    kinds = [r[0] for r in FakeHub.requests]
    assert kinds[0] == "/api/repos/create" and "branch" in kinds and kinds[-1] == "commit"
    create = FakeHub.requests[0][2]
    assert create["organization"] == "my-org" and create["name"] == "m" and create["visibility"] == "private"
    branch = next(r for r in FakeHub.requests if r[0] == "branch")
    assert branch[1] == "/api/models/my-org/m/branch/v1"
    commit = FakeHub.requests[-1]
    assert commit[1] == "/api/models/my-org/m/commit/v1" and commit[2][0]["value"]["summary"] == "first upload"
    assert set(FakeHub.files) == {n for n, _ in plan.files}
    assert "training_args.bin" not in FakeHub.files and not any(p.startswith("checkpoint") for p in FakeHub.files)
    assert FakeHub.files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    card = FakeHub.files["README.md"].decode()
    assert 'from_pretrained("my-org/m")' in card and 'from_pretrained("m")' not in card, card
