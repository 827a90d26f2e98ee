"""msgpack with numpy arrays, in the wire format of openpi's `openpi_client.msgpack_numpy` (openpi-client 0.1.2).

Written from the format (`/work/shared/reference/openpi_protocol.md`, section 4), not from openpi's code:

- msgpack >= 1.0 defaults: `str` -> msgpack str, `bytes` -> bin; map keys must be str or bytes on decode.
- `np.ndarray` -> a plain msgpack MAP (no ext type) with bin keys, in this order:
  `{b"__ndarray__": True, b"data": <C-order bytes>, b"dtype": dtype.str (e.g. "|u1", "<f8"), b"shape": [..]}`.
- `np.generic` scalars that are not Python subclasses (np.float32, np.int64, np.bool_) ->
  `{b"__npgeneric__": True, b"data": x.item(), b"dtype": dtype.str}`. np.float64 / np.str_ are float / str
  subclasses and go out as plain msgpack float / str.
- dtype kinds `V` (structured), `O` (object) and `c` (complex) are refused with `ValueError("Unsupported dtype")`.
- Decoding turns such maps back into arrays: a READ-ONLY zero-copy view of the received bytes (copy before
  writing into it or handing it to `torch.from_numpy`). Unlike openpi's decoder, a map whose dtype is refused
  or whose byte count disagrees with its shape raises `ValueError` (never an object array).

Example (uint8 2x3 `[[0,1,2],[3,4,5]]`):
`84 c4 0b "__ndarray__" c3 c4 04 "data" c4 06 00..05 c4 05 "dtype" a3 "|u1" c4 05 "shape" 92 02 03`.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = frozenset("VOc")
_ND = b"__ndarray__"
_NG = b"__npgeneric__"


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in _REFUSED_KINDS:
        raise ValueError(f"Unsupported dtype: {dtype} (structured, object and complex arrays cannot be sent)")


def encode_numpy(obj: Any) -> Any:
    """msgpack `default=` hook: numpy arrays and scalars -> openpi's maps; anything else is refused."""
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {_ND: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {_NG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot serialise an object of type {type(obj).__name__} with msgpack (use numpy arrays, "
                    f"str, bytes, numbers, lists and dicts)")


def decode_numpy(obj: dict) -> Any:
    """msgpack `object_hook=`: openpi's array / scalar maps -> numpy; other maps unchanged."""
    if _ND in obj:
        dtype = np.dtype(obj[b"dtype"])
        _check_dtype(dtype)
        shape = tuple(int(s) for s in obj[b"shape"])
        data = obj[b"data"]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != expected:
            got = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else type(data).__name__
            raise ValueError(f"ndarray map: {got} data bytes do not match dtype {dtype.str} and shape {shape} "
                             f"({expected} bytes)")
        return np.ndarray(buffer=data, dtype=dtype, shape=shape)
    if _NG in obj:
        dtype = np.dtype(obj[b"dtype"])
        _check_dtype(dtype)
        return dtype.type(obj[b"data"])
    return obj


def Packer(**kwargs) -> msgpack.Packer:  # noqa: N802 - the name openpi's module uses
    """A reusable `msgpack.Packer` that understands numpy (as `openpi_client.msgpack_numpy.Packer()`)."""
    return msgpack.Packer(default=encode_numpy, **kwargs)


def packb(obj: Any) -> bytes:
    """Serialise `obj` (dicts, lists, str, numbers, bytes, numpy arrays / scalars) to bytes."""
    return msgpack.packb(obj, default=encode_numpy)


def unpackb(data: bytes, **kwargs) -> Any:
    """Deserialise bytes written by `packb` or by openpi's client / server. Raises `ValueError` on bad input."""
    try:
        return msgpack.unpackb(data, object_hook=decode_numpy, **kwargs)
    except Exception as e:  # msgpack raises ValueError subclasses, TypeError, KeyError, OverflowError...
        raise ValueError(f"not a valid msgpack message ({type(e).__name__}: {e})") from e


__all__ = ["Packer", "decode_numpy", "encode_numpy", "packb", "unpackb"]
