"""`PolicyServer`: a websocket server that speaks openpi's policy protocol (and SPEC 1.5's envelope) on one port.

```
 client                                   PolicyServer (asyncio event loop)        worker thread (1)
   | GET / (Upgrade, [Authorization: Api-Key K])
   |  process_request: /healthz -> 200 "OK"; bad/missing key -> 401; too many connections -> 503
   |<-- binary msgpack(metadata) ---------- on connect (new policy session, reset)
   |--- binary msgpack(observation) -----> decode, reset key?  ----------------->  policy.infer(obs)
   |<-- binary msgpack({"actions", "policy_timing", "server_timing"}) <-----------  (model calls serialised)
   |--- binary msgpack({"type": "ping"|"infer"|"reset"|"metadata", "request_id", "payload"})  (envelope)
   |<-- binary msgpack({"type", "request_id", "status": "ok"|"error", "payload" | "error"})
   | bad openpi request -> ONE text frame (the error) then close (1008 bad request, 1011 server error)
```

Dialects: a decoded map whose keys are a subset of {"type", "request_id", "payload"} with a str "type" is an
envelope message; anything else is a bare openpi observation. Envelope errors are replies with
`status: "error"` and keep the connection open (the envelope client can match them by request id); openpi
errors are a text frame + close, which the real openpi client turns into `RuntimeError("Error in inference
server: ...")`.

Limits: `max_message_bytes` per incoming message (bigger -> websockets closes with 1009 "message too big"),
`idle_timeout` seconds without a message -> close 1000, `max_connections` open at once, one request in flight
per connection (requests are read one at a time and answered in order). Model calls run in a single worker
thread, so the event loop keeps answering pings, health checks and handshakes while a model runs.

Per-episode state: each connection gets its own session (`policy.new_session()` when the policy has it,
else the policy itself) which is `reset()` on connect and whenever a request carries the reset key (the
metadata's `reset_key`, default `"reset"`, true); a map holding only `{"reset": true}` resets and is answered
with `{"reset": true}`. openpi's client `reset()` sends nothing: open a new connection per episode, or send
the reset key.

Security: the server has no TLS. It binds 127.0.0.1 by default; binding 0.0.0.0 exposes the model to the
network - then pass `api_key` (checked in constant time against `Authorization: Api-Key <key>`) and keep it
on a trusted network or behind a TLS proxy.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from .msgpack_numpy import packb, unpackb
from .policy import ObservationError, Policy, reset_requested

logger = logging.getLogger(__name__)

ENVELOPE_KEYS = frozenset({"type", "request_id", "payload"})
ENVELOPE_TYPES = ("ping", "infer", "reset", "metadata")
CLOSE_BAD_REQUEST = 1008  # policy violation: the client sent something the policy cannot serve
CLOSE_SERVER_ERROR = 1011  # internal error (openpi's code for every failure)


def is_envelope(message: Any) -> bool:
    """True for SPEC 1.5 envelope messages ({type, request_id, payload}); False for bare openpi observations."""
    return isinstance(message, dict) and isinstance(message.get("type"), str) and set(message) <= ENVELOPE_KEYS


class PolicyServer:
    """Serve a [`Policy`] over websockets (openpi wire format + SPEC envelope). See the module docstring.

    Args:
        policy: what to serve (e.g. `load_policy(model_dir)`).
        host: interface to bind; 127.0.0.1 by default (see the security note).
        port: TCP port; 0 picks a free one (read `server.port` after `start()`).
        api_key: when set, clients must send `Authorization: Api-Key <api_key>` (else HTTP 401).
        max_message_bytes: largest incoming message (default 16 MiB; a LIBERO observation is ~0.3 MB).
        idle_timeout: seconds without a request before the server closes a connection (None: never).
        max_connections: connections open at once; more get HTTP 503.
        ping_interval, ping_timeout: websocket keepalive (as openpi's client: 20 s / 20 s).
    """

    def __init__(
        self,
        policy: Policy,
        host: str = "127.0.0.1",
        port: int = 10093,
        api_key: str | None = None,
        max_message_bytes: int = 16 * 2**20,
        idle_timeout: float | None = 600.0,
        max_connections: int = 32,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ):
        if max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {max_message_bytes}")
        self.policy = policy
        self.host = host
        self.port = int(port)
        self.api_key = api_key or None
        self.max_message_bytes = int(max_message_bytes)
        self.idle_timeout = idle_timeout
        self.max_connections = int(max_connections)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self._metadata = dict(policy.metadata)
        self._metadata.setdefault("reset_key", "reset")
        self._metadata_frame = packb(self._metadata)
        self._reset_key = self._metadata["reset_key"]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.requests_served = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """`ws://host:port` of the running server."""
        return f"ws://{self.host}:{self.port}"

    async def serve(self) -> None:
        """Run until `stop()` (or SIGINT / SIGTERM when run by `serve_forever(install_signal_handlers=True)`)."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handler, self.host, self.port, process_request=self._process_request, compression=None,
            max_size=self.max_message_bytes, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
            open_timeout=10, close_timeout=5,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            logger.info("policy server listening on %s (health: http://%s:%d/healthz, api key %s)", self.url,
                        self.host, self.port, "required" if self.api_key else "off")
            self._ready.set()
            await self._stop.wait()
            logger.info("policy server on %s stopping (%d requests served)", self.url, self.requests_served)

    def serve_forever(self, install_signal_handlers: bool = False) -> None:
        """Block serving. With `install_signal_handlers`, SIGINT and SIGTERM stop the server cleanly."""

        async def main():
            if install_signal_handlers:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, lambda s=sig: self._on_signal(s))
            await self.serve()

        try:
            asyncio.run(main())
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _on_signal(self, sig: int) -> None:
        logger.info("received %s", signal.Signals(sig).name)
        if self._stop is not None:
            self._stop.set()

    def start(self, timeout: float = 30.0) -> PolicyServer:
        """Serve in a background thread; returns once listening (`self.port` then holds the bound port)."""

        def run():
            try:
                asyncio.run(self.serve())
            except BaseException as e:  # surfaced by start() / stop()
                self._error = e
                self._ready.set()

        self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"policy server did not start listening on {self.host}:{self.port} in {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"policy server failed to start on {self.host}:{self.port}: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with `start()` (open connections are closed with 1001 going away)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP stage
    def _process_request(self, connection, request):
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            header = request.headers.get("Authorization", "")
            expected = f"Api-Key {self.api_key}"
            if not hmac.compare_digest(header.encode(), expected.encode()):
                logger.warning("rejected %s: %s Authorization header", connection.remote_address,
                               "wrong" if header else "no")
                return connection.respond(HTTPStatus.UNAUTHORIZED,
                                          "401 Unauthorized: send the header 'Authorization: Api-Key <key>'\n")
        if self._active >= self.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"503: the server already has {self.max_connections} connections\n")
        return None

    # ------------------------------------------------------------------ websocket stage
    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        self._active += 1
        peer = ws.remote_address
        session = self.policy.new_session() if hasattr(self.policy, "new_session") else self.policy
        logger.info("client %s connected (%d open)", peer, self._active)
        try:
            session.reset()
            await ws.send(self._metadata_frame)
            prev_total_ms = None
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.idle_timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    logger.info("client %s idle for %s s: closing", peer, self.idle_timeout)
                    await ws.close(1000, f"idle for {self.idle_timeout} s")
                    return
                t0 = time.perf_counter()
                if isinstance(message, str):
                    await self._fail(ws, "text frames are not requests: send a binary msgpack map (openpi's "
                                         "msgpack_numpy format)", CLOSE_BAD_REQUEST)
                    return
                try:
                    request = unpackb(message)
                except ValueError as e:
                    await self._fail(ws, f"could not decode the request ({len(message)} bytes): {e}", CLOSE_BAD_REQUEST)
                    return
                decode_ms = (time.perf_counter() - t0) * 1e3
                if is_envelope(request):
                    await ws.send(await self._envelope(session, request))
                    continue
                try:
                    reply = await self._call(session, request)
                except ObservationError as e:
                    await self._fail(ws, f"bad observation: {e}", CLOSE_BAD_REQUEST)
                    return
                except Exception as e:  # noqa: BLE001 - reported to the client, as openpi does
                    logger.exception("inference failed for %s", peer)
                    await self._fail(ws, f"inference failed: {type(e).__name__}: {e}\n{traceback.format_exc()}",
                                     CLOSE_SERVER_ERROR)
                    return
                timing = {"decode_ms": decode_ms, "infer_ms": reply.pop("_infer_ms", 0.0)}
                if prev_total_ms is not None:
                    timing["prev_total_ms"] = prev_total_ms
                reply["server_timing"] = timing
                await ws.send(packb(reply))
                prev_total_ms = (time.perf_counter() - t0) * 1e3
        except ConnectionClosed as e:
            if e.rcvd is not None and e.rcvd.code not in (1000, 1001):
                logger.info("client %s closed with %s", peer, e.rcvd)
            elif e.sent is not None and e.sent.code == 1009:
                logger.warning("client %s sent a message over max_message_bytes=%d: closed with 1009", peer,
                               self.max_message_bytes)
        finally:
            self._active -= 1
            logger.info("client %s disconnected (%d open)", peer, self._active)

    async def _fail(self, ws, text: str, code: int) -> None:
        logger.warning("request error (%s): %s", ws.remote_address, text.splitlines()[0])
        await ws.send(text)  # a TEXT frame: openpi's client raises RuntimeError("Error in inference server: ...")
        await ws.close(code, "bad request; error in previous frame" if code == CLOSE_BAD_REQUEST
                       else "internal server error; error in previous frame")

    async def _call(self, session, request: Any) -> dict:
        """Reset key handling, then `session.infer` in the worker thread. Returns the reply dict."""
        if reset_requested(request, self._reset_key):
            session.reset()
            if set(request) == {self._reset_key}:
                return {"reset": True}

        def run():
            t = time.perf_counter()
            out = session.infer(request)
            if not isinstance(out, dict) or "actions" not in out:
                raise TypeError(f"the policy returned {type(out).__name__} without 'actions'")
            out = dict(out)
            out["_infer_ms"] = (time.perf_counter() - t) * 1e3
            return out

        reply = await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self.requests_served += 1
        return reply

    async def _envelope(self, session, message: dict) -> bytes:
        """Answer one SPEC 1.5 envelope message; errors are replies with status "error" (connection kept)."""
        kind, rid = message["type"], message.get("request_id")
        reply: dict[str, Any] = {"type": "pong" if kind == "ping" else kind, "request_id": rid}
        try:
            if kind == "ping":
                payload: Any = {"time": time.time(), "metadata": self._metadata}
            elif kind == "metadata":
                payload = self._metadata
            elif kind == "reset":
                session.reset()
                payload = {"reset": True}
            elif kind == "infer":
                obs = message.get("payload")
                if not isinstance(obs, dict):
                    raise ObservationError(f"an infer message needs 'payload': the observation map, got "
                                           f"{type(obs).__name__}")
                t0 = time.perf_counter()
                payload = await self._call(session, obs)
                payload["server_timing"] = {"infer_ms": payload.pop("_infer_ms", 0.0),
                                            "total_ms": (time.perf_counter() - t0) * 1e3}
            else:
                raise ObservationError(f"unknown message type {kind!r}; expected one of {list(ENVELOPE_TYPES)}")
            reply.update(status="ok", payload=payload)
        except ObservationError as e:
            reply.update(status="error", error={"message": str(e), "key": e.key, "kind": "bad_request"})
        except Exception as e:  # noqa: BLE001
            logger.exception("envelope %s request %r failed", kind, rid)
            reply.update(status="error", error={"message": f"{type(e).__name__}: {e}", "key": None, "kind": "internal"})
        return packb(reply)


__all__ = ["ENVELOPE_TYPES", "PolicyServer", "is_envelope"]
