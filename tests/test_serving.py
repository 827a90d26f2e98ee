"""Policy server (hf_vlmdrive.serving) against the REAL openpi client (`openpi-client` 0.1.2), on loopback.

One tiny GeoVLA checkpoint (`save_tiny_geovla`) is served by a `PolicyServer` in a background thread on a
free port; every test talks to it over a real websocket. Determinism: the policy seeds the flow-matching
noise with `seed + step` (step = requests since the episode began; a connection starts an episode), so a
fresh in-process session fed the same observations gives bit-identical actions.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the serving extra (websockets) is not installed")
pytest.importorskip("msgpack", reason="the serving extra (msgpack) is not installed")
openpi_wcp = pytest.importorskip(
    "openpi_client.websocket_client_policy",
    reason="openpi-client is not installed (pip install --no-deps openpi-client==0.1.2 dm-tree typing_extensions)",
)
from openpi_client import msgpack_numpy as openpi_msgpack  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from hf_vlmdrive.serving import msgpack_numpy as ours  # noqa: E402
from hf_vlmdrive.serving.client import PolicyClient, PolicyServerError  # noqa: E402
from hf_vlmdrive.serving.policy import KeyMap, load_policy  # noqa: E402
from hf_vlmdrive.serving.server import PolicyServer  # noqa: E402
from hf_vlmdrive.testing.tiny_geovla import save_tiny_geovla  # noqa: E402

# openpi-client 0.1.2 calls websockets' connect() without a context manager (deprecated in websockets 17.1).
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")

API_KEY = "test-key-123"
MAX_BYTES = 2 * 2**20  # a LIBERO observation (~0.3 MB) fits, float32 images at 512 px do not


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # websockets >= 15 connects through *_proxy environment variables unless no_proxy covers the host.
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


def libero_obs(seed: int = 0, **overrides) -> dict:
    """openpi's LIBERO observation: two uint8 224x224x3 images, float64 (8,) state, prompt."""
    rng = np.random.default_rng(seed)
    obs = {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8),
        "prompt": "put the bowl on the plate",
    }
    obs.update(overrides)
    return {k: v for k, v in obs.items() if v is not None}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_geovla(tmp_path_factory.mktemp("serving") / "tiny_geovla")


@pytest.fixture(scope="module")
def policy(ckpt):
    return load_policy(ckpt, device="cpu")


@pytest.fixture(scope="module")
def server(policy):
    srv = PolicyServer(policy, host="127.0.0.1", port=0, api_key=API_KEY, max_message_bytes=MAX_BYTES,
                       idle_timeout=30).start()
    yield srv
    srv.stop()


def openpi_client(server, api_key=API_KEY):
    return openpi_wcp.WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=api_key)


def expected_actions(policy, observations):
    """What a fresh episode (a new connection) returns for these observations, computed in process."""
    session = policy.new_session()
    return [session.infer(o)["actions"] for o in observations]


def assert_still_serving(server, policy):
    client = openpi_client(server)
    got = client.infer(libero_obs(5))["actions"]
    assert np.array_equal(got, expected_actions(policy, [libero_obs(5)])[0])


# ------------------------------------------------------------------------------------------- wire format
def test_msgpack_is_byte_identical_to_openpi():
    obs = libero_obs(0, extra={"f32": np.float32(1.5), "i": np.int64(3), "b": np.bool_(True),
                               "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "tuple": (1, 2)})
    blob = openpi_msgpack.Packer().pack(obs)
    assert ours.packb(obs) == blob == ours.Packer().pack(obs)
    assert ours.packb(np.array([[0, 1, 2], [3, 4, 5]], np.uint8)).hex() == (
        "84c40b" + b"__ndarray__".hex() + "c3c404" + b"data".hex() + "c406000102030405c405" + b"dtype".hex()
        + "a3" + b"|u1".hex() + "c405" + b"shape".hex() + "920203")
    back = ours.unpackb(blob)
    for key in ("observation/image", "observation/state"):
        assert back[key].dtype == obs[key].dtype and np.array_equal(back[key], obs[key])
        assert not back[key].flags.writeable  # zero-copy view, as openpi's decoder
    assert type(back["extra"]["f32"]) is np.float32 and back["extra"]["tuple"] == [1, 2]
    reply = {"actions": np.ones((8, 7), np.float32), "server_timing": {"infer_ms": 1.0}}
    assert np.array_equal(openpi_msgpack.unpackb(ours.packb(reply))["actions"], reply["actions"])
    for bad in (np.array([1 + 2j]), np.array([object()], dtype=object)):
        with pytest.raises(ValueError, match="Unsupported dtype"):
            ours.packb(bad)
    with pytest.raises(ValueError, match="not a valid msgpack"):
        ours.unpackb(b"\xc1 not msgpack")
    forged = {b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "<f8", b"shape": [2]}
    with pytest.raises(ValueError, match="data bytes do not match"):
        ours.unpackb(openpi_msgpack.Packer().pack(forged))


# ------------------------------------------------------------------------------------------- openpi client
def test_handshake_metadata(server, policy, ckpt):
    meta = openpi_client(server).get_server_metadata()
    assert meta == policy.metadata
    assert meta["model_type"] == "geovla" and meta["action_chunk_size"] == 8 and meta["action_dim"] == 7
    assert meta["state_dim"] == 8 and meta["state_key"] == "observation/state" and meta["prompt_key"] == "prompt"
    assert meta["image_keys"] == ["observation/image", "observation/wrist_image"]
    assert meta["image_shapes"]["observation/image"] == [224, 224, 3]
    assert meta["norm_stats_sha256"] == hashlib.sha256((ckpt / "norm_stats.json").read_bytes()).hexdigest()
    assert meta["reset_key"] == "reset"


def test_infer_round_trip_equals_in_process(server, policy):
    observations = [libero_obs(1), libero_obs(2), libero_obs(1)]
    expected = expected_actions(policy, observations)
    client = openpi_client(server)
    replies = [client.infer(o) for o in observations]
    for got, want in zip(replies, expected):
        assert got["actions"].dtype == np.float32 and got["actions"].shape == (8, 7)
        assert np.array_equal(got["actions"], want)
    assert not np.array_equal(replies[0]["actions"], replies[2]["actions"])  # step 2 draws other noise
    assert {"infer_ms", "decode_ms"} <= set(replies[0]["server_timing"])
    assert "prev_total_ms" in replies[1]["server_timing"]
    # A new connection is a new episode: it replays the same actions.
    assert np.array_equal(openpi_client(server).infer(observations[0])["actions"], expected[0])
    # The actions depend on the observation (the tiny model is not constant).
    other = policy.new_session().infer(libero_obs(1, prompt="open the top drawer"))["actions"]
    assert not np.array_equal(other, expected[0])


def test_reset_key_restarts_the_episode(server, policy):
    client = openpi_client(server)
    first = client.infer(libero_obs(3))["actions"]
    client.infer(libero_obs(4))
    assert client.infer({"reset": True})["reset"] is True
    assert np.array_equal(client.infer(libero_obs(3))["actions"], first)
    client.infer(libero_obs(4))
    assert np.array_equal(client.infer(libero_obs(3, reset=True))["actions"], first)


BAD_OBSERVATIONS = {
    "missing_key": (libero_obs(0, **{"observation/wrist_image": None}),
                    ["observation/wrist_image", "uint8 (224, 224, 3)", "missing"]),
    "image_shape": (libero_obs(0, **{"observation/image": np.zeros((112, 112, 3), np.uint8)}),
                    ["observation/image", "(224, 224, 3)", "(112, 112, 3)"]),
    "image_dtype": (libero_obs(0, **{"observation/image": np.zeros((224, 224, 3), np.float32)}),
                    ["observation/image", "uint8", "float32"]),
    "state_shape": (libero_obs(0, **{"observation/state": np.zeros(7)}), ["observation/state", "float64 (8,)", "(7,)"]),
    "state_dtype": (libero_obs(0, **{"observation/state": np.zeros(8, np.int64)}),
                    ["observation/state", "float64 (8,)", "int64"]),
    "state_nan": (libero_obs(0, **{"observation/state": np.array([0, 1, np.nan, 0, 0, 0, 0, 0.0])}),
                  ["observation/state", "NaN", "indices [2]"]),
    "state_list": (libero_obs(0, **{"observation/state": [0.0] * 8}), ["observation/state", "float64 (8,)", "list"]),
    "prompt_type": (libero_obs(0, prompt=3), ["prompt", "str"]),
}


@pytest.mark.parametrize("case", sorted(BAD_OBSERVATIONS))
def test_bad_observation_is_a_text_error_naming_the_key(server, policy, case):
    obs, needles = BAD_OBSERVATIONS[case]
    client = openpi_client(server)
    with pytest.raises(RuntimeError, match="Error in inference server") as err:
        client.infer(obs)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))
    with pytest.raises(ConnectionClosed):  # the server closed this connection, as openpi's does
        client.infer(libero_obs(0))
    assert_still_serving(server, policy)


def _raw(server):
    return connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None, proxy=None,
                   additional_headers={"Authorization": f"Api-Key {API_KEY}"})


@pytest.mark.parametrize("payload,needle", [
    (b"\xc1\xc1 definitely not msgpack", "could not decode"),
    (ours.packb([1, 2, 3]), "must be a msgpack map"),
    ("a text frame", "binary msgpack"),
])
def test_undecodable_request_is_a_text_error(server, policy, payload, needle):
    with _raw(server) as ws:
        ours.unpackb(ws.recv(timeout=10))  # metadata
        ws.send(payload)
        reply = ws.recv(timeout=10)
        assert isinstance(reply, str) and needle in reply
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008
    assert_still_serving(server, policy)


def test_oversized_frame_is_refused_with_1009(server, policy):
    client = openpi_client(server)
    big = libero_obs(0, **{"observation/image": np.zeros((512, 512, 3), np.float32)})  # 3 MB > 2 MiB
    with pytest.raises(ConnectionClosed, match="1009"):
        client.infer(big)
    assert_still_serving(server, policy)


@pytest.mark.parametrize("api_key", [None, "wrong-key"])
def test_bad_api_key_gets_401(server, policy, api_key):
    with pytest.raises(InvalidStatus, match="401"):
        openpi_client(server, api_key=api_key)
    with pytest.raises(ConnectionError, match="HTTP 401.*api_key"):
        PolicyClient("127.0.0.1", server.port, api_key=api_key)
    assert_still_serving(server, policy)


def test_concurrent_clients(server, policy):
    per_thread = {t: [libero_obs(10 * t + i) for i in range(3)] for t in range(3)}
    expected = {t: expected_actions(policy, obs) for t, obs in per_thread.items()}
    results, errors = {}, []

    def work(t):
        try:
            client = openpi_client(server)
            results[t] = [client.infer(o)["actions"] for o in per_thread[t]]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    for t in range(3):
        for got, want in zip(results[t], expected[t]):
            assert np.array_equal(got, want)


def test_healthz_needs_no_key(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"OK\n"


# ------------------------------------------------------------------------------------------- envelope
def test_envelope_ping_infer_request_ids_and_errors(server, policy):
    with _raw(server) as ws:
        meta = ours.unpackb(ws.recv(timeout=10))
        ws.send(ours.packb({"type": "ping", "request_id": "abc"}))
        pong = ours.unpackb(ws.recv(timeout=10))
        assert pong["type"] == "pong" and pong["request_id"] == "abc" and pong["status"] == "ok"
        assert pong["payload"]["metadata"] == meta
        ws.send(ours.packb({"type": "infer", "request_id": 7, "payload": libero_obs(1)}))
        reply = ours.unpackb(ws.recv(timeout=30))
        assert reply["request_id"] == 7 and reply["status"] == "ok"
        assert np.array_equal(reply["payload"]["actions"], expected_actions(policy, [libero_obs(1)])[0])
        # errors are replies with the request id; the connection stays open
        ws.send(ours.packb({"type": "infer", "request_id": 8, "payload": libero_obs(1, prompt=None)}))
        err = ours.unpackb(ws.recv(timeout=10))
        assert err["request_id"] == 8 and err["status"] == "error" and err["error"]["key"] == "prompt"
        assert "'prompt'" in err["error"]["message"] and "str" in err["error"]["message"]
        ws.send(ours.packb({"type": "teleport", "request_id": 9}))
        err = ours.unpackb(ws.recv(timeout=10))
        assert err["request_id"] == 9 and err["status"] == "error" and "teleport" in err["error"]["message"]
        ws.send(ours.packb({"type": "reset", "request_id": 10}))
        assert ours.unpackb(ws.recv(timeout=10))["payload"] == {"reset": True}
        ws.send(ours.packb({"type": "metadata", "request_id": 11}))
        assert ours.unpackb(ws.recv(timeout=10))["payload"] == meta


# ------------------------------------------------------------------------------------------- our client
def test_policy_client_round_trip_reset_and_errors(server, policy):
    want = expected_actions(policy, [libero_obs(1), libero_obs(2)])
    with PolicyClient("127.0.0.1", server.port, api_key=API_KEY, timeout=30) as client:
        assert client.get_server_metadata() == policy.metadata
        assert np.array_equal(client.infer(libero_obs(1))["actions"], want[0])
        assert np.array_equal(client.infer(libero_obs(2))["actions"], want[1])
        client.reset()
        assert np.array_equal(client.infer(libero_obs(1))["actions"], want[0])
        assert client.ping() > 0
        assert np.array_equal(client.request("infer", libero_obs(2))["actions"], want[1])
        with pytest.raises(PolicyServerError, match="observation/state.*float64 \\(8,\\)"):
            client.infer(libero_obs(0, **{"observation/state": np.zeros(3)}))
    with pytest.raises(ConnectionError, match="cannot connect"):
        PolicyClient("127.0.0.1", _free_port())


class SlowPolicy:
    """A model-free policy that takes `delay` seconds per request."""

    metadata = {"model_type": "slow"}

    def __init__(self, delay):
        self.delay = delay

    def infer(self, obs):
        time.sleep(self.delay)
        return {"actions": np.zeros((2, 3), np.float32)}

    def reset(self):
        pass


def test_client_timeout_and_loop_stays_responsive_during_inference():
    with PolicyServer(SlowPolicy(1.5), port=0) as srv:
        client = PolicyClient("127.0.0.1", srv.port, timeout=0.3)
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError, match="within 0.3 s"):
            client.infer({"x": np.zeros(1)})
        # the model call runs in a worker thread: health checks and new handshakes are answered meanwhile
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert PolicyClient("127.0.0.1", srv.port).get_server_metadata()["model_type"] == "slow"
        assert time.perf_counter() - t0 < 1.4


def test_idle_timeout_and_connection_limit():
    with PolicyServer(SlowPolicy(0.0), port=0, idle_timeout=0.3, max_connections=1) as srv:
        with _raw(srv) as ws:
            ours.unpackb(ws.recv(timeout=5))
            with pytest.raises(ConnectionError, match="HTTP 503"):  # the one allowed connection is taken
                PolicyClient("127.0.0.1", srv.port)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)  # nothing sent for 0.3 s: the server closes
            assert ws.close_code == 1000 and "idle" in ws.close_reason
        for _ in range(50):  # the slot frees once the server's handler has finished closing
            try:
                client = PolicyClient("127.0.0.1", srv.port)
                break
            except ConnectionError:
                time.sleep(0.05)
        assert client.infer({"x": np.zeros(1)})["actions"].shape == (2, 3)


# ------------------------------------------------------------------------------------------- key map, CLI
def test_custom_key_map(ckpt):
    km = {"images": ["cam_high", "cam_wrist"], "state": "qpos", "prompt": "task", "image_shape": None}
    pol = load_policy(ckpt, key_map=km, device="cpu", num_steps=1, noise="fixed")
    meta = pol.metadata
    assert meta["image_keys"] == ["cam_high", "cam_wrist"] and meta["state_key"] == "qpos" and meta["num_steps"] == 1
    rng = np.random.default_rng(0)
    obs = {"cam_high": rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),
           "cam_wrist": rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),
           "qpos": rng.normal(size=8).astype(np.float32), "task": "open the top drawer"}
    a, b = pol.infer(obs)["actions"], pol.infer(obs)["actions"]
    assert a.shape == (8, 7) and np.array_equal(a, b)  # noise="fixed": same observation, same actions
    with pytest.raises(ValueError, match="2 cameras"):
        load_policy(ckpt, key_map={"images": ["only_one"]}, device="cpu")
    with pytest.raises(ValueError, match="unknown key_map fields"):
        KeyMap.from_any({"imgs": ["a", "b"]})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serve_subprocess(ckpt, policy):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "no_proxy": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hf_vlmdrive.cli", "serve", "--model", str(ckpt), "--port", "0", "--device", "cpu"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        port, lines = None, []
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "policy server listening on ws://127.0.0.1:" in line:
                port = int(line.split("ws://127.0.0.1:")[1].split()[0])
        assert port is not None, "".join(lines)
        client = openpi_wcp.WebsocketClientPolicy(host="127.0.0.1", port=port)
        got = client.infer(libero_obs(1))["actions"]
        # another process: its torch thread count (and so the order of float reductions) may differ from this
        # one's, e.g. under OMP_NUM_THREADS=1, so equal up to float32 rounding (measured 1e-7), not bit for bit
        np.testing.assert_allclose(got, expected_actions(policy, [libero_obs(1)])[0], rtol=0, atol=1e-5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "policy server stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
