"""Request bodies read with a size limit that holds while reading, and ``Content-Encoding`` decoded.

Why here and not in a middleware: the ingest fast path (``routes/events``) skips FastAPI's middleware, and
the limit must apply to what the body *becomes*: a 100 KiB gzip bomb inflating to gigabytes is refused
with 413 as soon as the inflated size passes the limit, never held in memory. ``Content-Length`` is not
trusted (it is only used to refuse early).

Encodings: ``identity``, ``gzip`` (``x-gzip``) and ``deflate`` (the zlib format RFC 9110 names, and raw
deflate, which some clients send). Anything else is 415 ``unsupported_encoding``. zstd is not offered: the
standard library of the supported Python versions has no decoder, and no client we interoperate with needs it.
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from outrider.control_plane import errors

ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


def _too_large(limit: int) -> errors.APIError:
    return errors.APIError(413, "payload_too_large", f"the body is larger than {limit} bytes")


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than ``limit`` bytes in total."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.size = 0
        self.chunks: list[bytes] = []
        self._decoder: zlib._Decompress | None = None
        self._raw_deflate = False

    def _new_decoder(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "deflate":
            # RFC 9110's "deflate" is the zlib format; a raw deflate stream (no zlib header) is common in the wild.
            self._raw_deflate = len(first) >= 2 and (first[0] & 0x0F != 8 or (first[0] << 8 | first[1]) % 31 != 0)
            return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        while data:
            if self._decoder is None:
                self._decoder = self._new_decoder(data)
            try:
                out = self._decoder.decompress(data, self.limit + 1 - self.size)
            except zlib.error as exc:
                raise errors.APIError(400, "malformed_body", f"the body is not valid {self.encoding} data: {exc}") from exc
            self.size += len(out)
            if self.size > self.limit:
                raise _too_large(self.limit)
            self.chunks.append(out)
            data = self._decoder.unconsumed_tail
            if not data and self._decoder.eof and self._decoder.unused_data and self.encoding != "deflate":
                data, self._decoder = self._decoder.unused_data, None  # the next member of a multi-member gzip

    def result(self) -> bytes:
        if self._decoder is None:
            return b""
        if not self._decoder.eof:
            raise errors.APIError(400, "malformed_body", f"the {self.encoding} body is truncated")
        return b"".join(self.chunks)


async def read(request: Request, limit: int) -> bytes:
    """The request's body, decoded per its ``Content-Encoding``; 413 as soon as the raw or the decoded body
    exceeds ``limit`` bytes, 415 for an encoding not in :data:`ENCODINGS`, 400 for a corrupt stream."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise errors.APIError(
            415, "unsupported_encoding", f"content encoding {encoding!r} is not one of {', '.join(ENCODINGS)}"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    inflater = None if encoding == "identity" else _Inflater("gzip" if encoding == "x-gzip" else encoding, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if inflater is None:
            chunks.append(chunk)
        else:
            inflater.feed(chunk)
    return b"".join(chunks) if inflater is None else inflater.result()
