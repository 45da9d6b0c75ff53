"""Pixel sizes from headers, and None for anything untrustworthy."""

import struct
import zlib

from catalog.headers import pixel_size
from catalog.sample import jpeg_bytes, png_bytes


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_png(tmp_path):
    assert pixel_size(write(tmp_path, "a.png", png_bytes(832, 1216))) == (832, 1216)


def test_jpeg_with_app_segments(tmp_path):
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 300) + b"E" * 300
    data = jpeg_bytes(1664, 2432)
    data = data[:2] + exif + data[2:]
    assert pixel_size(write(tmp_path, "a.jpg", data)) == (1664, 2432)


def test_webp_variants(tmp_path):
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (1023).to_bytes(3, "little") + (767).to_bytes(3, "little")
    riff = b"RIFF" + struct.pack("<I", 4 + len(vp8x) + 20) + b"WEBP" + vp8x + b"\x00" * 20
    assert pixel_size(write(tmp_path, "x.webp", riff)) == (1024, 768)
    bits = (640 - 1) | ((480 - 1) << 14)
    vp8l = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 25
    riff = b"RIFF" + struct.pack("<I", 4 + len(vp8l)) + b"WEBP" + vp8l
    assert pixel_size(write(tmp_path, "l.webp", riff)) == (640, 480)


def test_untrustworthy_headers_give_none(tmp_path):
    good = png_bytes(100, 100)
    assert pixel_size(write(tmp_path, "zero.png", b"")) is None
    assert pixel_size(write(tmp_path, "trunc.png", good[:20])) is None
    # A header whose fields were changed without fixing the CRC: a lying header.
    lying = good[:16] + struct.pack(">II", 5000, 5000) + good[24:]
    assert pixel_size(write(tmp_path, "lying.png", lying)) is None
    # A consistent header claiming an absurd size.
    ihdr = struct.pack(">IIBBBBB", 1 << 30, 1 << 30, 8, 2, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert pixel_size(write(tmp_path, "huge.png", huge)) is None
    assert pixel_size(write(tmp_path, "text.png", b"not an image at all")) is None
    assert pixel_size(write(tmp_path, "trunc.jpg", jpeg_bytes(10, 10)[:12])) is None
    assert pixel_size(str(tmp_path / "missing.png")) is None
