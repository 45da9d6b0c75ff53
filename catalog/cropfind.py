"""Find where a final image was cut from its original: the pure image search.

Owns the method behind `catalog crops`, with no database and no folders: given
two decoded images, say where the final sits in the original and how sure that
is. The statuses, strongest first:

- ``exact``: every pixel of the final equals the original's pixels in the box.
  Found by looking for one detailed row of the final in the original's raw
  pixel bytes (a C-speed substring search), then comparing every pixel of
  each hit. A box that fits in two places is not called exact.
- ``approx``: a re-encoded crop (a JPEG q90+ of the box, say): found by
  coarse-to-fine normalised cross-correlation on downscaled images, then
  checked at full resolution: NCC >= 0.99, no 32x32 block whose mean moved
  (re-encoding keeps block means; an edit does not), and every textured block
  in place (a resized image drifts by a pixel or more across the crop).
- ``review``: likely the same picture at the same scale, but not proven: a
  resize by a pixel or two, an edit (a face swap, an enhancement), a box that
  fits in several places.
- ``none``: not a crop of this original. A crop of a sibling at another scale
  (a 2048 crop held against its 3072 upscale) lands here: its textured blocks
  do not line up at any small shift, however high the global NCC climbs.
- ``failed``: something made the question unanswerable (an unreadable file,
  a final larger than the original); the reason says what.

`find_crop` is the whole decision for one pair; `Picture` is a decoded image
whose derived forms (raw bytes, greyscale, pyramid) are computed once and
shared by every final looked for in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

STATUSES = ("exact", "approx", "review", "none", "failed")

# approx: how close a re-encoded crop must stay to its box.
APPROX_NCC = 0.99
APPROX_BLOCK = 32  # the block whose mean difference is checked
APPROX_MEAN_DIFF = 3.0  # grey levels (0-255): JPEG q90 moves a 32x32 mean by well under 1
APPROX_DRIFT = 0.5  # pixels: textured blocks further off than this were not merely re-encoded
APPROX_FRACTION = 0.9  # of the textured blocks, found in place
# Blocks of the final looked for near the box, one by one: equal content at
# equal scale finds them all in place, another scale or picture almost none.
LOCAL_BLOCK = 64
LOCAL_REACH = 3  # pixels searched around the box for each block
LOCAL_MATCH = 0.8  # NCC at which a block counts as found
MAX_LOCAL_BLOCKS = 48
REVIEW_FRACTION = 0.5  # of the textured blocks found, for a likely match
# Across the crop, a resize by a pixel or two drifts textured blocks by more
# than RESIZE_DRIFT and less than MAX_RESIZE_DRIFT; more is another scale.
RESIZE_DRIFT = 0.75
MAX_RESIZE_DRIFT = 4.0
# A block is textured when this much (grey levels of standard deviation) is
# left once its plane is removed: a smooth ramp matches itself at any scale.
TEXTURE = 3.0
# Without enough textured blocks, the global NCC alone can only suggest.
MIN_TEXTURED_BLOCKS = 4
FLAT_REVIEW_NCC = 0.99

# Exact search: rows sampled to pick the most detailed one, and caps on how
# many hits of that row are checked before the final counts as repetitive.
ROWS_SAMPLED = 64
MAX_ROW_HITS = 20_000

# Coarse-to-fine: the coarsest level keeps the original near this size, and
# the final at least this many pixels on its short side.
COARSE_SIDE = 320
COARSE_MIN_TEMPLATE = 24
CANDIDATES = 3
SURE_NCC = 0.98
RANK_PATCH = 384


class Found(NamedTuple):
    status: str
    box: Optional[tuple[int, int, int, int]]  # x1, y1, x2, y2 in original pixels, x2/y2 exclusive
    score: Optional[float]  # 1.0 for exact; the NCC at the box otherwise
    reason: Optional[str]


class Unreadable(Exception):
    """The file cannot be decoded; the message says why."""


# Modes compared byte for byte; anything else is converted first.
_RAW_MODES = {"RGB", "RGBA", "L", "I;16"}


@dataclass(eq=False)
class Picture:
    """A decoded image and what the search derives from it, computed once."""

    pixels: np.ndarray  # (height, width, channels), uint8 or uint16
    mode: str
    raw: bytes = field(repr=False)
    _grey: Optional[np.ndarray] = field(default=None, repr=False)
    _pyramid: list = field(default_factory=list, repr=False)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def bytes_per_pixel(self) -> int:
        return int(self.pixels.shape[2] * self.pixels.itemsize)

    @classmethod
    def from_pil(cls, image) -> Picture:
        if image.mode not in _RAW_MODES:
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            if image.mode in ("1", "L", "LA", "I", "F") and not has_alpha:
                image = image.convert("L")
            else:
                image = image.convert("RGBA" if has_alpha else "RGB")
        raw = _raw_bytes(image)
        dtype = np.dtype("<u2") if image.mode == "I;16" else np.uint8
        channels = len(image.getbands())
        pixels = np.frombuffer(raw, dtype=dtype).reshape(image.height, image.width, channels)
        return cls(pixels, image.mode, raw)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Picture:
        """For tests and benchmarks: an (h, w) or (h, w, 3|4) uint8 array."""
        if array.ndim == 2:
            array = array[:, :, None]
        array = np.ascontiguousarray(array, dtype=np.uint8)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        raw = array.tobytes()
        return cls(np.frombuffer(raw, dtype=np.uint8).reshape(array.shape), mode, raw)

    def grey(self) -> np.ndarray:
        """Luma as float32, 0-255 whatever the bit depth."""
        if self._grey is None:
            p = self.pixels
            if p.dtype == np.uint8 and self.mode in ("RGB", "RGBA", "L"):
                from PIL import Image

                # Pillow's integer luma: a tenth of numpy's time, and its
                # rounding (half a grey level) is far below what matters here.
                image = Image.frombuffer(self.mode, (self.width, self.height), self.raw, "raw", self.mode, 0, 1)
                g: np.ndarray = np.asarray(image.convert("L"), dtype=np.float32)
            elif p.shape[2] >= 3:
                scale = 1.0 / 257.0 if p.dtype != np.uint8 else 1.0
                g = (p[:, :, 0] * np.float32(0.299 * scale) + p[:, :, 1] * np.float32(0.587 * scale)
                     + p[:, :, 2] * np.float32(0.114 * scale))
            else:
                scale = 1.0 / 257.0 if p.dtype != np.uint8 else 1.0
                g = p[:, :, 0].astype(np.float32) * np.float32(scale)
            self._grey = np.ascontiguousarray(g, dtype=np.float32)
        return self._grey

    def level(self, n: int) -> np.ndarray:
        """The greyscale image averaged over 2**n x 2**n blocks."""
        if not self._pyramid:
            self._pyramid.append(self.grey())
        while len(self._pyramid) <= n:
            g = self._pyramid[-1]
            h, w = (g.shape[0] // 2) * 2, (g.shape[1] // 2) * 2
            g = g[:h, :w]
            self._pyramid.append(np.ascontiguousarray(
                (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2]) * np.float32(0.25)))
        return self._pyramid[n]


def _raw_bytes(image) -> bytes:
    """The pixels as bytes in one piece. Pillow's tobytes fills buffers of
    ImageFile.MAXBLOCK (64 KB) and joins them: for a 3072x3072 original that
    is 430 buffers and a second copy, a sixth of the time a pure crop costs.
    One buffer the size of the image halves it."""
    from PIL import ImageFile

    saved = ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = max(saved, image.width * image.height * len(image.getbands()) * 2 + 1)
    try:
        return image.tobytes()
    finally:
        ImageFile.MAXBLOCK = saved


def open_picture(path: str) -> Picture:
    """Decode an image file completely; an unreadable one raises Unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return Picture.from_pil(image)
    except FileNotFoundError:
        raise Unreadable("file not found") from None
    except Image.DecompressionBombError:
        raise Unreadable("image too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow says "image file is truncated", "broken PNG file", ...
        text = str(exc).strip() or type(exc).__name__
        raise Unreadable(text.splitlines()[0]) from None


# ---------------------------------------------------------------- exact


def _detailed_rows(pixels: np.ndarray) -> list[int]:
    """Rows of the final ordered by how much they change along their length,
    most first: a detailed row occurs in few places of the original."""
    h = pixels.shape[0]
    step = max(1, h // ROWS_SAMPLED)
    rows = list(range(0, h, step))
    sample = pixels[rows]
    if sample.shape[1] < 2:
        return rows
    changes = np.count_nonzero((sample[:, 1:] != sample[:, :-1]).any(axis=2), axis=1)
    return [rows[i] for i in np.argsort(-changes, kind="stable")]


def _same_pixels(final: np.ndarray, window: np.ndarray) -> bool:
    # In bands of rows, so a wrong hit costs a few rows, not the whole final.
    band = 64
    return all(np.array_equal(final[start:start + band], window[start:start + band])
               for start in range(0, final.shape[0], band))


def find_exact(final: Picture, original: Picture) -> Optional[Found]:
    """The box whose pixels equal the final's, if there is one: `exact` when
    exactly one box fits, `review` when several do, None when none does."""
    if final.mode != original.mode or final.pixels.dtype != original.pixels.dtype:
        return None
    h, w, big_h, big_w = final.height, final.width, original.height, original.width
    if h > big_h or w > big_w:
        return None
    rows = _detailed_rows(final.pixels)
    needle_row, check_row = rows[0], rows[min(1, len(rows) - 1)]
    bpp = final.bytes_per_pixel
    line, big_line = w * bpp, big_w * bpp
    needle = final.raw[needle_row * line:(needle_row + 1) * line]
    # The needle's row can only be at rows needle_row .. needle_row + big_h - h of the original.
    start = needle_row * big_line
    end = (needle_row + big_h - h) * big_line + big_line
    big = original.pixels
    found: list[tuple[int, int]] = []
    hits = 0
    pos = original.raw.find(needle, start, end)
    while pos != -1:
        hits += 1
        row, offset = divmod(pos, big_line)
        x1, misaligned = divmod(offset, bpp)
        if not misaligned and x1 + w <= big_w:
            y1 = row - needle_row
            if (np.array_equal(final.pixels[check_row], big[y1 + check_row, x1:x1 + w])
                    and _same_pixels(final.pixels, big[y1:y1 + h, x1:x1 + w])):
                found.append((x1, y1))
                if len(found) == 2:
                    break
        if hits >= MAX_ROW_HITS:
            break
        pos = original.raw.find(needle, pos + 1, end)
    if not found:
        return None
    x1, y1 = found[0]
    box = (x1, y1, x1 + w, y1 + h)
    if len(found) == 1 and hits < MAX_ROW_HITS:
        return Found("exact", box, 1.0, None)
    if len(found) == 1:
        return Found("review", box, 1.0, "every pixel matches here, but the final is too repetitive "
                                         "to prove this is the only place")
    return Found("review", box, 1.0, "the final matches exactly in more than one place "
                                     "(flat or repeated content): the box is not unique")


# ---------------------------------------------------------------- correlation


def _fast_len(n: int) -> int:
    """The next length >= n with only factors 2, 3 and 5 (quick FFTs)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _window_sums(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum over every h x w window (valid positions), from an integral image."""
    s = np.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(image, axis=0, dtype=np.float64), axis=1, out=s[1:, 1:])
    return s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]


def ncc_map(image: np.ndarray, template: np.ndarray) -> Optional[np.ndarray]:
    """Normalised cross-correlation of `template` at every valid position
    of `image` (FFT for the products, integral images for the norms); None
    when the template is flat."""
    h, w = template.shape
    big_h, big_w = image.shape
    t = template.astype(np.float64) - float(template.mean())
    t_norm = float(np.sqrt((t * t).sum()))
    if t_norm < 1e-6:
        return None
    shape = (_fast_len(big_h), _fast_len(big_w))
    product = np.fft.irfft2(np.fft.rfft2(image, shape) * np.conj(np.fft.rfft2(t, shape)), shape)
    num = product[:big_h - h + 1, :big_w - w + 1]
    n = h * w
    s1 = _window_sums(image, h, w)
    s2 = _window_sums(np.square(image, dtype=np.float64), h, w)
    var = np.maximum(s2 - s1 * s1 / n, 0.0)
    denom = np.sqrt(var) * t_norm
    out = np.zeros_like(num)
    ok = denom > 1e-6 * t_norm * math.sqrt(n)
    out[ok] = num[ok] / denom[ok]
    return out


class _Template:
    """A template with its mean removed, for NCC at chosen positions."""

    def __init__(self, template: np.ndarray):
        self.h, self.w = template.shape
        self.t = (template - np.float32(template.mean())).astype(np.float32)
        self.norm = float(np.sqrt(np.einsum("ij,ij->", self.t, self.t, dtype=np.float64)))

    def ncc_at(self, image: np.ndarray, x: int, y: int) -> float:
        win = image[y:y + self.h, x:x + self.w]
        n = self.h * self.w
        s1 = float(win.sum(dtype=np.float64))
        s2 = float(np.einsum("ij,ij->", win, win, dtype=np.float64))
        var = s2 - s1 * s1 / n
        if var <= 1e-6 * n or self.norm <= 1e-6:
            return 0.0
        return float(np.einsum("ij,ij->", self.t, win, dtype=np.float64)) / (math.sqrt(var) * self.norm)


def _coarse_level(final: Picture, original: Picture) -> int:
    level = 0
    while (max(original.width, original.height) >> (level + 1) >= COARSE_SIDE
           and min(final.width, final.height) >> (level + 1) >= COARSE_MIN_TEMPLATE):
        level += 1
    return level


def _peaks(scores: np.ndarray, count: int, apart: int) -> list[tuple[int, int]]:
    scores = scores.copy()
    out = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[y, x] <= -1.0:
            break
        out.append((int(x), int(y)))
        scores[max(0, y - apart):y + apart + 1, max(0, x - apart):x + apart + 1] = -2.0
    return out


def _ranking_patch(template: np.ndarray) -> tuple[int, int, np.ndarray]:
    """The most detailed RANK_PATCH-square part of a template (of nine
    spread over it): ranking neighbouring positions needs only a patch, and
    a contiguous one keeps full detail in both directions."""
    h, w = template.shape
    if h <= RANK_PATCH and w <= RANK_PATCH:
        return 0, 0, template
    ph, pw = min(h, RANK_PATCH), min(w, RANK_PATCH)
    best = (-1.0, 0, 0)
    for oy in (0, (h - ph) // 2, h - ph):
        for ox in (0, (w - pw) // 2, w - pw):
            p = template[oy:oy + ph, ox:ox + pw]
            detail = float(np.abs(np.diff(p, axis=0)).mean() + np.abs(np.diff(p, axis=1)).mean())
            if detail > best[0]:
                best = (detail, ox, oy)
    _, ox, oy = best
    return ox, oy, template[oy:oy + ph, ox:ox + pw]


def _refine(final: Picture, original: Picture, level: int, x: int, y: int) -> tuple[int, int, float]:
    """Follow one coarse candidate down the pyramid to full resolution: at
    each finer level, the best of the few positions the coarser one allows."""
    for lv in range(level - 1, -1, -1):
        image, template = original.level(lv), final.level(lv)
        max_x, max_y = image.shape[1] - template.shape[1], image.shape[0] - template.shape[0]
        ox, oy, patch = _ranking_patch(template)
        ranker = _Template(patch)
        reach = 2 if lv else 1
        cx, cy = 2 * x, 2 * y
        best = (-2.0, cx, cy)
        for yy in range(max(0, cy - reach), min(max_y, cy + reach + 1) + 1):
            for xx in range(max(0, cx - reach), min(max_x, cx + reach + 1) + 1):
                s = ranker.ncc_at(image, xx + ox, yy + oy)
                if s > best[0]:
                    best = (s, xx, yy)
        _, x, y = best
    return x, y, _Template(final.level(0)).ncc_at(original.level(0), x, y)


@dataclass
class _Blocks:
    textured: int = 0
    matched: int = 0
    # How far most matched blocks sit from the box (80th percentile, pixels):
    # one block misled by repeated texture does not decide.
    offset: float = 0.0
    # least-squares fit of displacement against position, per axis: (offset, slope)
    fit_x: tuple[float, float] = (0.0, 0.0)
    fit_y: tuple[float, float] = (0.0, 0.0)

    @property
    def fraction(self) -> float:
        return self.matched / self.textured if self.textured else 0.0


def _parabola(minus: float, centre: float, plus: float) -> float:
    denom = minus - 2 * centre + plus
    if denom >= 0:
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (minus - plus) / denom))


def _plane_residual(size: int) -> np.ndarray:
    """Basis to remove a block's best-fit plane: a linear ramp matches
    itself at any scale and shift, so only what is left after it counts."""
    c = np.arange(size, dtype=np.float32) - (size - 1) / 2
    return c / np.float32(np.sqrt((c * c).sum()))


def _block_place(block: np.ndarray, o: np.ndarray, x: int, y: int) -> Optional[tuple[float, float]]:
    """Where `block` (expected at x, y of `o`) best fits within LOCAL_REACH
    pixels, to a fraction of a pixel; None when it fits nowhere there."""
    size = block.shape[0]
    r = LOCAL_REACH
    x0, y0 = max(0, x - r), max(0, y - r)
    region = o[y0:min(o.shape[0], y + size + r), x0:min(o.shape[1], x + size + r)]
    if region.shape[0] < size or region.shape[1] < size:
        return None
    t = block.astype(np.float64) - float(block.mean())
    t_norm = float(np.sqrt((t * t).sum()))
    windows = np.lib.stride_tricks.sliding_window_view(region, (size, size))
    num = np.einsum("ijkl,kl->ij", windows, t.astype(np.float32), dtype=np.float64)
    n = size * size
    s1 = _window_sums(region, size, size)
    s2 = _window_sums(np.square(region, dtype=np.float64), size, size)
    denom = np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0)) * t_norm
    if t_norm <= 1e-6:
        return None
    scores = np.where(denom > 1e-9, num / np.maximum(denom, 1e-9), 0.0)
    j, i = np.unravel_index(int(np.argmax(scores)), scores.shape)
    dx, dy = x0 + int(i) - x, y0 + int(j) - y
    best = float(scores[j, i])
    # A best place on the edge of the reach is no place: the block would
    # rather be further away.
    if best < LOCAL_MATCH or max(abs(dx), abs(dy)) >= r:
        return None
    sub_x = dx + _parabola(float(scores[j, i - 1]) if i > 0 else best, best,
                           float(scores[j, i + 1]) if i + 1 < scores.shape[1] else best)
    sub_y = dy + _parabola(float(scores[j - 1, i]) if j > 0 else best, best,
                           float(scores[j + 1, i]) if j + 1 < scores.shape[0] else best)
    return sub_x, sub_y


def _local_blocks(f: np.ndarray, o: np.ndarray, x: int, y: int) -> _Blocks:
    """Does each textured block of the final find its own place near the box,
    and how far from it? Equal content at equal scale: every block in place.
    A resize: places drift linearly across the crop. Another scale or another
    picture: most blocks find no place at all."""
    h, w = f.shape
    # Small finals get small blocks: enough of them to count.
    size = min(LOCAL_BLOCK, max(16, min(h, w) // 4))
    out = _Blocks()
    if size < 16:
        return out
    u = _plane_residual(size)
    textured = []
    for by in range(0, h - size + 1, size):
        for bx in range(0, w - size + 1, size):
            b = f[by:by + size, bx:bx + size]
            b = b - b.mean()
            b = b - u[:, None] * (float(u @ b.sum(axis=1)) / size) - u[None, :] * (float(b.sum(axis=0) @ u) / size)
            if float(b.std()) >= TEXTURE:
                textured.append((bx, by))
    # Spread over the whole crop, so an edited region cannot fill the sample.
    step = max(1, math.ceil(len(textured) / MAX_LOCAL_BLOCKS))
    chosen = textured[::step]
    out.textured = len(chosen)
    points = []
    for bx, by in chosen:
        found = _block_place(f[by:by + size, bx:bx + size], o, x + bx, y + by)
        if found is not None:
            out.matched += 1
            points.append((bx + size / 2, by + size / 2, found[0], found[1]))
    if points:
        p = np.array(points)
        out.offset = float(np.percentile(np.abs(p[:, 2:]).max(axis=1), 80))
        out.fit_x = _line(p[:, 0], p[:, 2])
        out.fit_y = _line(p[:, 1], p[:, 3])
    return out


def _line(pos: np.ndarray, disp: np.ndarray) -> tuple[float, float]:
    if len(pos) < 2 or float(np.ptp(pos)) == 0.0:
        return float(disp.mean()), 0.0
    slope, offset = np.polyfit(pos, disp, 1)
    return float(offset), float(slope)


def _worst_block_mean_diff(f: np.ndarray, o: np.ndarray) -> float:
    h, w = f.shape
    b = min(APPROX_BLOCK, h, w)
    hh, ww = (h // b) * b, (w // b) * b
    d = (f[:hh, :ww] - o[:hh, :ww]).reshape(hh // b, b, ww // b, b).mean(axis=(1, 3))
    worst = float(np.abs(d).max()) if d.size else 0.0
    # The strips right of and below the last whole block count too.
    for strip_f, strip_o in ((f[hh:, :], o[hh:, :]), (f[:, ww:], o[:, ww:])):
        if strip_f.size >= b:
            worst = max(worst, float(abs((strip_f - strip_o).mean())))
    return worst


def find_by_correlation(final: Picture, original: Picture) -> Found:
    """Where the final best correlates with the original, and which status
    the evidence there supports (approx, review or none)."""
    h, w, big_h, big_w = final.height, final.width, original.height, original.width
    level = _coarse_level(final, original)
    scores = ncc_map(original.level(level), final.level(level))
    if scores is None:
        return Found("none", None, None, "the final is flat: nothing to correlate")
    apart = max(2, min(scores.shape) // 8)
    best = (-2.0, 0, 0)
    for cx, cy in _peaks(scores, CANDIDATES, apart):
        x, y, s = _refine(final, original, level, cx, cy)
        if s > best[0]:
            best = (s, x, y)
        if s >= SURE_NCC:
            break  # the strongest coarse peak held at full resolution: no need to try the others
    score, x, y = best
    f, o = final.grey(), original.grey()[y:y + h, x:x + w]
    blocks = _local_blocks(f, original.grey(), x, y)
    mean_diff = _worst_block_mean_diff(f, o)
    box = (x, y, x + w, y + h)
    ncc = min(round(score, 4), 0.9999)  # 1 is for exact boxes only
    if blocks.textured < MIN_TEXTURED_BLOCKS:
        if score >= FLAT_REVIEW_NCC:
            return Found("review", box, ncc, f"too little texture to check blocks; NCC {score:.3f}")
        return Found("none", None, ncc, f"no match: best NCC {score:.3f}, too little texture to check blocks")
    if blocks.fraction < REVIEW_FRACTION:
        return Found("none", None, ncc, f"not a crop of this original: best NCC {score:.3f}, "
                                        f"{blocks.matched} of {blocks.textured} textured blocks found near the box")
    drift_x = abs(blocks.fit_x[1]) * w
    drift_y = abs(blocks.fit_y[1]) * h
    if max(drift_x, drift_y) > MAX_RESIZE_DRIFT:
        return Found("none", None, ncc, f"another scale: textured blocks drift {max(drift_x, drift_y):.1f} px "
                                        "across the crop")
    if (score >= APPROX_NCC and mean_diff <= APPROX_MEAN_DIFF and blocks.fraction >= APPROX_FRACTION
            and blocks.offset <= APPROX_DRIFT and max(drift_x, drift_y) <= RESIZE_DRIFT):
        return Found("approx", box, ncc, f"re-encoded: NCC {score:.4f}, worst 32x32 block mean "
                                         f"difference {mean_diff:.1f}")
    if max(drift_x, drift_y) > RESIZE_DRIFT:
        # The final is the box resized: the box it came from is the final's
        # extent scaled back, from where its top-left block landed.
        sx, sy = 1.0 + blocks.fit_x[1], 1.0 + blocks.fit_y[1]
        x1 = min(max(0, x + round(blocks.fit_x[0])), big_w - 1)
        y1 = min(max(0, y + round(blocks.fit_y[0])), big_h - 1)
        x2 = min(big_w, x1 + max(1, round(w * sx)))
        y2 = min(big_h, y1 + max(1, round(h * sy)))
        return Found("review", (x1, y1, x2, y2), ncc,
                     f"resized? textured blocks drift {max(drift_x, drift_y):.1f} px across the crop; "
                     f"box scaled back to {x2 - x1}x{y2 - y1}")
    return Found("review", box, ncc, f"edited? NCC {score:.3f}, worst 32x32 block mean difference {mean_diff:.1f}, "
                                     f"{blocks.matched} of {blocks.textured} textured blocks in place")


def find_crop(final: Picture, original: Picture) -> Found:
    """Where `final` was cut from `original`: exact search first, then
    correlation for finals that are not pixel-identical."""
    if final.width > original.width or final.height > original.height:
        return Found("failed", None, None, f"the final ({final.width}x{final.height}) is larger than "
                                           f"the original ({original.width}x{original.height})")
    exact = find_exact(final, original)
    if exact is not None:
        return exact
    return find_by_correlation(final, original)


RANK = {"exact": 4, "approx": 3, "review": 2, "none": 1, "failed": 0}


def better(a: Found, b: Found) -> bool:
    """Is `a` stronger evidence than `b`? By status, then by score."""
    return (RANK[a.status], a.score or 0.0) > (RANK[b.status], b.score or 0.0)
