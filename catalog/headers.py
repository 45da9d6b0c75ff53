"""Pixel size from image headers: PNG, JPEG and WebP, without decoding pixels.

Owns `pixel_size(path)`. It reads a few hundred bytes (JPEG: walks segment
headers with seeks), so indexing costs one small read per new or changed image.
Anything it cannot vouch for (truncated, zero-byte, lying or unknown headers)
gives None rather than a guess.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import BinaryIO, Optional

# PNG allows 2**31-1; real generations are a few thousand pixels. A header
# claiming more than this is lying (or corrupt), and a wrong size would make
# the "cropped" flag lie too.
MAX_SIDE = 1 << 16

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers that carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def pixel_size(path: str) -> Optional[tuple[int, int]]:
    try:
        # A raw read of the first bytes: PNG (most images) needs nothing more,
        # and skips the cost of a buffered file object.
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, 33)
            if head.startswith(_PNG_SIGNATURE):
                size = _png(head)
            elif head.startswith(b"\xff\xd8"):
                with os.fdopen(os.dup(fd), "rb") as f:
                    size = _jpeg(f)
            elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                with os.fdopen(os.dup(fd), "rb") as f:
                    size = _webp(head, f)
            else:
                size = None
        finally:
            os.close(fd)
    except (OSError, struct.error, ValueError):
        return None
    if size is None:
        return None
    w, h = size
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        return None
    return w, h


def _png(head: bytes) -> Optional[tuple[int, int]]:
    # The first chunk must be IHDR with length 13, and its CRC must hold: a
    # header edited by hand (or by a broken tool) is not trusted.
    if len(head) < 33 or head[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg(f: BinaryIO) -> Optional[tuple[int, int]]:
    f.seek(2)
    for _ in range(1000):  # bounded: a corrupt file must not loop forever
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        while kind == 0xFF:  # fill bytes
            b = f.read(1)
            if not b:
                return None
            kind = b[0]
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue  # markers without a length
        if kind == 0xD9:
            return None
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return None
        if kind in _JPEG_SOF:
            body = f.read(5)
            if len(body) < 5:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            return w, h
        f.seek(length - 2, 1)
    return None


def _webp(head: bytes, f: BinaryIO) -> Optional[tuple[int, int]]:
    f.seek(12)
    chunk = f.read(30)
    if len(chunk) < 30:
        return None
    kind = chunk[:4]
    data = chunk[8:]
    if kind == b"VP8X":
        w = 1 + int.from_bytes(data[4:7], "little")
        h = 1 + int.from_bytes(data[7:10], "little")
        return w, h
    if kind == b"VP8L":
        if data[0] != 0x2F:
            return None
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            return None
        w, h = struct.unpack("<HH", data[6:10])
        return w & 0x3FFF, h & 0x3FFF
    return None
