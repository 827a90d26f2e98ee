"""`PolicyClient`: a synchronous client of [`PolicyServer`] (and of any openpi websocket policy server).

Same wire format as openpi's `WebsocketClientPolicy` (bare msgpack observation -> msgpack reply, metadata
frame on connect, text frame = server error), plus what that client lacks: timeouts, `close()` / a context
manager, a `reset()` that reaches the server (the reset key of the server's metadata), the envelope `ping`,
and errors that say what happened. `ReconnectingPolicy` wraps any such client for long evaluations: after an
error it connects again for the next request.

>>> with PolicyClient("127.0.0.1", 10093) as client:  # doctest: +SKIP
...     actions = client.infer(obs)["actions"]  # (T, D) float32
"""

from __future__ import annotations

import inspect
import itertools
import logging
import time
from typing import Any

from .msgpack_numpy import packb, unpackb

logger = logging.getLogger(__name__)


class PolicyServerError(RuntimeError):
    """The server answered a request with an error (the connection is closed afterwards in the openpi dialect)."""


class PolicyClient:
    """Connect to a policy server at `ws://host:port`.

    Args:
        host: server host, or a full `ws://` / `wss://` URI (then `port` is ignored).
        port: server port.
        api_key: sent as `Authorization: Api-Key <api_key>`.
        timeout: seconds to wait for each reply (None: forever); a late reply closes the connection.
        open_timeout: seconds to connect and receive the metadata frame.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = 10093, api_key: str | None = None,
                 timeout: float | None = 60.0, open_timeout: float = 10.0):
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        self.uri = host if host.startswith("ws") else f"ws://{host}" + (f":{port}" if port is not None else "")
        self.timeout = timeout
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        kwargs = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}  # websockets >= 17
        try:
            self._ws = connect(self.uri, compression=None, max_size=None, additional_headers=headers,
                               open_timeout=open_timeout, proxy=None, **kwargs)
        except InvalidStatus as e:
            status = e.response.status_code
            hint = " (wrong or missing api_key)" if status == 401 else ""
            raise ConnectionError(f"policy server at {self.uri} refused the connection: HTTP {status}{hint}: "
                                  f"{e.response.body.decode(errors='replace').strip()}") from e
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot connect to a policy server at {self.uri}: {e}") from e
        self._ids = itertools.count()
        self._metadata = self._receive(open_timeout, "the metadata frame")

    # ------------------------------------------------------------------ openpi-compatible API
    def get_server_metadata(self) -> dict[str, Any]:
        """The metadata the server sent on connect (model type, chunk size, keys, norm-stats identity...)."""
        return self._metadata

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Send one observation, return the reply (`{"actions": (T, D), "server_timing": {...}, ...}`)."""
        self._send(packb(obs))
        return self._receive(self.timeout, "the inference reply")

    def reset(self) -> None:
        """Start a new episode on the server (sends `{reset_key: True}`; openpi's client sends nothing)."""
        key = self._metadata.get("reset_key", "reset") if isinstance(self._metadata, dict) else "reset"
        self._send(packb({key: True}))
        self._receive(self.timeout, "the reset reply")

    # ------------------------------------------------------------------ envelope API (SPEC 1.5)
    def request(self, kind: str, payload: Any = None) -> dict[str, Any]:
        """Send an envelope message {type, request_id, payload}; return the reply's payload (raises on error)."""
        rid = next(self._ids)
        message = {"type": kind, "request_id": rid}
        if payload is not None:
            message["payload"] = payload
        self._send(packb(message))
        reply = self._receive(self.timeout, f"the {kind} reply")
        if not isinstance(reply, dict) or reply.get("request_id") != rid:
            raise PolicyServerError(f"expected the reply to request {rid}, got {reply!r:.200}")
        if reply.get("status") != "ok":
            err = reply.get("error") or {}
            raise PolicyServerError(f"{kind} request {rid} failed: {err.get('message', reply)}")
        return reply["payload"]

    def ping(self) -> float:
        """Round-trip time of an envelope ping, in milliseconds."""
        t0 = time.perf_counter()
        self.request("ping")
        return (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------ plumbing
    def _send(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(data)
        except ConnectionClosed as e:
            raise ConnectionError(f"the connection to {self.uri} is closed ({e}); open a new PolicyClient") from e

    def _receive(self, timeout: float | None, what: str) -> Any:
        from websockets.exceptions import ConnectionClosed

        try:
            frame = self._ws.recv(timeout=timeout)
        except TimeoutError as e:
            self.close()  # a late reply would be taken for the next request's: drop the connection
            raise TimeoutError(f"no {what} from {self.uri} within {timeout} s (connection closed)") from e
        except ConnectionClosed as e:
            raise ConnectionError(f"{self.uri} closed the connection while waiting for {what}: {e}") from e
        if isinstance(frame, str):
            self.close()
            raise PolicyServerError(f"Error in inference server:\n{frame}")
        return unpackb(frame)

    def close(self) -> None:
        """Close the connection (normal closure 1000)."""
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ReconnectingPolicy:
    """A websocket client that reconnects after an error (openpi's server closes the connection on any error,
    which would otherwise fail every later episode too). `connect()` builds a fresh client."""

    def __init__(self, connect):
        self._connect = connect
        self._client = connect()  # fail fast when the server is not there

    def _get(self):
        if self._client is None:
            self._client = self._connect()
        return self._client

    def infer(self, obs: dict) -> dict:
        try:
            return self._get().infer(obs)
        except Exception:
            self.close()
            raise

    def reset(self) -> None:
        try:
            self._get().reset()
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            try:
                client.close()
            except Exception:  # noqa: BLE001
                logger.debug("closing the policy client failed", exc_info=True)


__all__ = ["PolicyClient", "PolicyServerError", "ReconnectingPolicy"]
