"""Built-in synthetic FER2013-like data: procedurally drawn 48x48 grayscale cartoon faces.

FER2013 (Goodfellow et al., used by every seed paper) cannot be downloaded on the machines
fernas is developed on, so the package ships this generator as its default `--data demo`.
Each image is a face oval with eyes, brows, nose and mouth whose geometry follows one of the
seven FER2013 expressions, in FER2013 order:

    angry     brows lowered and drawn together, narrowed eyes, pressed narrow mouth
    disgust   raised upper lip (a notch and a small opening), nose wrinkles, lowered brows
    fear      raised brows drawn together, wide eyes, stretched open mouth
    happy     upturned mouth corners, slightly narrowed eyes
    sad       raised inner brows, downturned mouth
    surprise  high brows, wide eyes, round open mouth
    neutral   none of that

Every image varies in identity (face size, feature positions, skin and background tone, line
thickness), pose (shift, scale, rotation), lighting (a gradient), noise, occluders (a bar or
a blob over part of the face) and expression intensity (a weak expression is close to
neutral), and each expression parameter is jittered per image, so the classes overlap the way
real expressions do. Everything is drawn with vectorised torch ops from one seed; 5,000 images
take about a second on two CPU cores.

Classes are balanced within each split (FER2013 itself is not; its "disgust" is 1.5 %).
Each split has its own random stream, so changing `n_train` leaves val and test unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from fernas.dataset import FER_CLASSES, Dataset, Split
from fernas.demo_spec import DEFAULT_SIZES, DIFFICULTY_NAMES

CLASSES = FER_CLASSES


# Expression geometry, in the face's own frame: x right, y down, face centre at 0, face
# half-height about 0.8.  Each row is the change from neutral at full intensity.
_PARAMS = ["brow_in_y", "brow_out_y", "brow_in_x", "eye_h", "mouth_w", "curve",
           "open", "round", "lip_raise", "wrinkle", "mouth_y"]
_NEUTRAL = dict(brow_in_y=-0.40, brow_out_y=-0.42, brow_in_x=0.11, eye_h=0.055, mouth_w=0.26,
                curve=0.0, open=0.0, round=0.0, lip_raise=0.0, wrinkle=0.0, mouth_y=0.45)
_DELTAS = {
    "angry":    dict(brow_in_y=0.11, brow_out_y=-0.03, brow_in_x=-0.05, eye_h=-0.02, mouth_w=-0.07, curve=-0.03),
    "disgust":  dict(brow_in_y=0.06, brow_in_x=-0.02, eye_h=-0.015, mouth_w=-0.02, curve=-0.07,
                     open=0.03, lip_raise=0.09, wrinkle=1.0),
    "fear":     dict(brow_in_y=-0.10, brow_out_y=-0.05, brow_in_x=-0.03, eye_h=0.035, mouth_w=0.09,
                     open=0.07, curve=-0.04),
    "happy":    dict(curve=0.14, mouth_w=0.08, open=0.03, eye_h=-0.015, mouth_y=-0.02),
    "sad":      dict(brow_in_y=-0.09, brow_out_y=0.04, curve=-0.11, mouth_w=-0.03, eye_h=-0.01, mouth_y=0.02),
    "surprise": dict(brow_in_y=-0.14, brow_out_y=-0.14, eye_h=0.04, open=0.16, mouth_w=-0.11, round=1.0,
                     mouth_y=0.03),
    "neutral":  dict(),
}
# Per-image jitter of each parameter (standard deviation), the source of class overlap.
_JITTER = dict(brow_in_y=0.035, brow_out_y=0.03, brow_in_x=0.02, eye_h=0.012, mouth_w=0.035,
               curve=0.035, open=0.02, round=0.2, lip_raise=0.02, wrinkle=0.2, mouth_y=0.03)


@dataclass(frozen=True)
class Difficulty:
    """The knobs of how hard the faces are; every level draws the same random numbers in the
    same order, so only these ranges differ between levels."""
    intensity: tuple[float, float] = (0.4, 1.0)  # expression intensity, uniform
    jitter_scale: float = 0.7  # multiplies _JITTER: class overlap
    noise_std: tuple[float, float] = (2.0, 10.0)  # pixel noise, grey levels
    p_occlude: float = 0.2  # chance of an occluder per image
    occluder_radius: tuple[float, float] = (0.15, 0.35)  # face-frame units
    rotation_deg: float = 10.0  # standard deviation of the head's roll
    rotation_max: float = 0.35  # radians, about two standard deviations
    scale: tuple[float, float] = (0.85, 1.12)
    shift_std: float = 0.06  # of the face centre, in half-images
    light_amp: float = 0.45  # largest lighting gradient


# "standard" was tuned with benchmarks/demo_difficulty.py: a linear model well below a tiny
# CNN, the tiny CNN well below a good one.  On it, every competent network of the search
# space trained 48+2 epochs lands within a few points of the VGG seed.  "hard" varies pose,
# occlusion, lighting and noise more (FER2013's faces in the wild), the things a network
# needs capacity and the right inductive bias for, so architectures differ by more
# (benchmarks/results/equal_compute_hard.json and long_decodes_hard_w8.json measure by how much).
DIFFICULTIES = {
    "standard": Difficulty(),
    "hard": Difficulty(noise_std=(4.0, 24.0), p_occlude=0.5, occluder_radius=(0.2, 0.5), rotation_deg=22.0,
                       rotation_max=0.75, scale=(0.7, 1.2), shift_std=0.12, light_amp=0.8),
}
assert tuple(DIFFICULTIES) == DIFFICULTY_NAMES  # the names a command line offers (fernas.demo_spec)


def _table(diff: Difficulty) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    neutral = torch.tensor([_NEUTRAL[k] for k in _PARAMS])
    deltas = torch.tensor([[_DELTAS[c].get(k, 0.0) for k in _PARAMS] for c in CLASSES])
    jitter = torch.tensor([_JITTER[k] for k in _PARAMS]) * diff.jitter_scale
    return neutral, deltas, jitter


def _sig(d: torch.Tensor, soft: float | torch.Tensor) -> torch.Tensor:
    """Soft inside-mask from a signed distance (positive inside): antialiased edges."""
    return torch.sigmoid(d / soft)


def _seg_dist(u, v, x0, y0, x1, y1):
    """Distance from points (u, v) (B, H, W) to segments (x0, y0)-(x1, y1) with (B, 1, 1) ends."""
    dx, dy = x1 - x0, y1 - y0
    t = (((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-8)).clamp(0, 1)
    return torch.hypot(u - (x0 + t * dx), v - (y0 + t * dy))


def _render(y: torch.Tensor, g: torch.Generator, diff: Difficulty, size: int = 48) -> torch.Tensor:
    """Draw faces for labels y (N,) -> uint8 (N, size, size). All per-image draws come from g."""
    d = _draws(y, g, diff, size)
    f = _face_frame(d, size)
    img = _bc(d.bg).expand(len(y), size, size).clone()
    face = _sig(1 - torch.sqrt((f.u / _bc(d.face_rx)) ** 2 + (f.v / _bc(d.face_ry)) ** 2), 0.03)
    img = img + face * (_bc(d.skin) - img)
    img = _features(img, d, f)
    # Lighting gradient and occluder, then noise.
    img = img * (1 + _bc(d.light_amp) * (torch.cos(_bc(d.light_dir)) * f.px + torch.sin(_bc(d.light_dir)) * f.py) * 0.5)
    od = torch.where(_bc(d.occ_kind) == 1,
                     _bc(d.occ_r) * 0.45 - (f.v - _bc(d.occ_y)).abs(),  # horizontal bar
                     _bc(d.occ_r) - torch.hypot(f.u - _bc(d.occ_x), f.v - _bc(d.occ_y)))  # round blob
    img = _paint(img, _sig(od, f.soft) * _bc(d.occ_on.float()), _bc(d.occ_tone))
    img = img + d.noise * _bc(d.noise_std)
    return img.round().clamp(0, 255).to(torch.uint8)


def _bc(t: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N, 1, 1), to broadcast over pixels."""
    return t[:, None, None]


def _paint(img: torch.Tensor, mask: torch.Tensor, tone: torch.Tensor) -> torch.Tensor:
    return img + mask * (tone - img)


def _draws(y: torch.Tensor, g: torch.Generator, diff: Difficulty, size: int) -> SimpleNamespace:
    """Every random number of a batch of faces, in one fixed order (the data depend on it)."""
    n = y.shape[0]

    def U(lo, hi, shape=(n,)):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    def N(std, shape=(n,)):
        return torch.randn(shape, generator=g) * std

    neutral, deltas, jitter = _table(diff)
    k = U(*diff.intensity)[:, None]  # (N, 1) expression intensity
    e = neutral + k * deltas[y] + torch.randn((n, len(_PARAMS)), generator=g) * jitter  # (N, P)
    d = SimpleNamespace(P={name: e[:, i, None, None] for i, name in enumerate(_PARAMS)})  # each (N, 1, 1)
    # Identity: face shape, feature placement, tones, stroke width.
    d.face_rx, d.face_ry = U(0.55, 0.70), U(0.72, 0.88)
    d.eye_x, d.eye_y, d.eye_w = U(0.22, 0.30), U(-0.28, -0.18), U(0.09, 0.13)
    d.brow_dy = U(-0.04, 0.04)  # brow height relative to the eye line, per identity
    d.skin, d.bg = U(120, 215), U(20, 235)
    d.ink = U(10, 70)  # colour of features
    d.stroke = U(0.035, 0.06)
    # Pose: face-frame coords from image coords  (u, v) = R(-a) ((px, py) - t) / s.
    d.ang = N(diff.rotation_deg * math.pi / 180).clamp(-diff.rotation_max, diff.rotation_max)
    d.sc = U(*diff.scale)
    d.tx, d.ty = N(diff.shift_std), N(diff.shift_std)
    # Lighting: linear gradient across the face.
    d.light_dir = U(0, 2 * math.pi)
    d.light_amp = U(0.0, diff.light_amp)
    d.noise_std = U(*diff.noise_std)
    # Occluder: 0 none, 1 horizontal bar (glasses, hair), 2 blob (hand).
    d.occ_on = torch.rand(n, generator=g) < diff.p_occlude
    d.occ_kind = torch.randint(1, 3, (n,), generator=g)
    d.occ_x, d.occ_y = U(-0.7, 0.7), U(-0.6, 0.8)
    d.occ_r, d.occ_tone = U(*diff.occluder_radius), U(0, 255)
    d.noise = torch.randn((n, size, size), generator=g)
    return d


def _face_frame(d: SimpleNamespace, size: int) -> SimpleNamespace:
    """Pixel grids (H, W) and the face-frame coordinates u, v (N, H, W) of each image's pose."""
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    py, px = torch.meshgrid(lin, lin, indexing="ij")  # (H, W)
    px, py = px - _bc(d.tx), py - _bc(d.ty)
    ca, sa = torch.cos(_bc(d.ang)), torch.sin(_bc(d.ang))
    return SimpleNamespace(px=px, py=py, u=(ca * px + sa * py) / _bc(d.sc), v=(-sa * px + ca * py) / _bc(d.sc),
                           soft=0.02 / _bc(d.sc))  # soft: ~ one pixel, for antialiasing


def _features(img: torch.Tensor, d: SimpleNamespace, f: SimpleNamespace) -> torch.Tensor:
    """Eyes, brows, nose (and disgust wrinkles), mouth: where the expression shows."""
    P, u, v, soft, n = d.P, f.u, f.v, f.soft, img.shape[0]
    au = u.abs()  # features are left-right symmetric: draw in |u|
    # Eyes: ellipses whose height carries the expression (wide for fear/surprise).
    eye = _sig(1 - torch.sqrt(((au - _bc(d.eye_x)) / _bc(d.eye_w)) ** 2
                              + ((v - _bc(d.eye_y)) / P["eye_h"].clamp(min=0.012)) ** 2), 0.15)
    img = _paint(img, eye, _bc(d.ink))
    # Brows: a segment from the inner to the outer end above each eye.
    by = _bc(d.eye_y) + _bc(d.brow_dy)
    bd = _seg_dist(au, v, P["brow_in_x"], by + P["brow_in_y"] + 0.25, _bc(d.eye_x) + 0.14, by + P["brow_out_y"] + 0.25)
    img = _paint(img, _sig(_bc(d.stroke) * 0.9 - bd, soft), _bc(d.ink))
    # Nose: a short vertical stroke; disgust adds wrinkle strokes beside it.
    zero = _bc(torch.zeros(n))
    nd = _seg_dist(u, v, torch.zeros_like(_bc(d.tx)), zero - 0.02, zero, zero + 0.18)
    img = _paint(img, 0.6 * _sig(_bc(d.stroke) * 0.6 - nd, soft), _bc(d.ink))
    wd = _seg_dist(au, v, _bc(torch.full((n,), 0.07)), _bc(torch.full((n,), -0.05)), _bc(torch.full((n,), 0.15)),
                   _bc(torch.full((n,), 0.05)))
    img = _paint(img, P["wrinkle"].clamp(0, 1) * _sig(_bc(d.stroke) * 0.5 - wd, soft), _bc(d.ink))
    # Mouth: a lip line y = my - curve * (x/w)^2 (corners up when curve > 0), with the upper
    # lip raised in the middle for disgust, plus an opening (wide ellipse, round for surprise).
    mw, my = P["mouth_w"].clamp(min=0.08), P["mouth_y"]
    xr = (au / mw).clamp(max=1.5)
    line_y = my - P["curve"] * (xr ** 2) - P["lip_raise"] * torch.exp(-(u / 0.08) ** 2)
    img = _paint(img, _sig(_bc(d.stroke) - (v - line_y).abs(), soft) * _sig(mw - au, soft), _bc(d.ink))
    op = P["open"].clamp(min=0.0)
    rw = mw * (1 - 0.55 * P["round"].clamp(0, 1))  # round mouths are narrower
    mouth_hole = _sig(1 - torch.sqrt((u / rw) ** 2 + ((v - my - op * 0.5) / (op + 1e-3)) ** 2), 0.15)
    return _paint(img, mouth_hole * (op > 0.01).float(), _bc(d.ink) * 0.5)


def _split(n: int, seed: int, index: int, diff: Difficulty) -> Split:
    # Each split its own stream, derived from (seed, split index); a large seed's value wraps
    # into the 64 bits a generator takes (smaller ones, as before, are taken as they are).
    stream = int(seed) * 1000003 + 7919 * (index + 1)
    g = torch.Generator().manual_seed(stream if -(1 << 63) <= stream < 1 << 64 else stream % (1 << 64))
    y = (torch.arange(n) % len(CLASSES))[torch.randperm(n, generator=g)]  # balanced
    xs = [_render(y[i:i + 1024], g, diff) for i in range(0, n, 1024)]  # chunks bound peak memory
    x = torch.cat(xs) if xs else torch.zeros((0, 48, 48), dtype=torch.uint8)
    return Split(x, y.to(torch.int64))


def make_demo(n_train: int = DEFAULT_SIZES[0], n_val: int = DEFAULT_SIZES[1], n_test: int = DEFAULT_SIZES[2],
              seed: int = 0, difficulty: str = "standard") -> Dataset:
    """The synthetic demo dataset: three class-balanced splits of 48x48 uint8 faces.

    Deterministic in (size of the split, seed, difficulty: a key of `DIFFICULTIES`); the
    classes are FER2013's, in FER2013 order.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    splits = [_split(n, seed, i, DIFFICULTIES[difficulty]) for i, n in enumerate((n_train, n_val, n_test))]
    return Dataset(list(CLASSES), *splits, source="demo",
                   info={"kind": "demo", "seed": seed, "sizes": [n_train, n_val, n_test], "difficulty": difficulty})
