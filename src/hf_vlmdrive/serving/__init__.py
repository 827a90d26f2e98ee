"""Policy serving: an openpi-compatible websocket policy server and client (SPEC 1.5 evaluation).

- `msgpack_numpy`: openpi's msgpack-with-numpy wire format (byte-identical to `openpi_client.msgpack_numpy`).
- `policy`: the `Policy` protocol, `KeyMap`, `ModelPolicy` and `load_policy(model_dir)` (GeoVLA checkpoints).
- `server`: `PolicyServer` (websockets asyncio; openpi bare-observation dialect + `{type, request_id, payload}`
  envelope on one port, `/healthz`, api key, limits).
- `client`: `PolicyClient` (timeouts, reset, envelope ping), `ReconnectingPolicy` (a new connection after an error).

Needs `websockets` and `msgpack` (the `serving` extra). Names are imported on first access (PEP 562).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY_ATTRS = {
    "KeyMap": ".policy",
    "ModelPolicy": ".policy",
    "ObservationError": ".policy",
    "Policy": ".policy",
    "load_policy": ".policy",
    "PolicyServer": ".server",
    "PolicyClient": ".client",
    "PolicyServerError": ".client",
    "ReconnectingPolicy": ".client",
}

__all__ = list(_LAZY_ATTRS)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS)
