"""On-device batched augmentation and ten-crop for 48x48 grayscale faces.

Follows the training protocol of the VGG paper (Khaireddin & Chen, seeds 000/002):
random rescaling by up to +-20 %, horizontal and vertical shift by up to +-20 %, rotation by up
to +-10 degrees (each applied with probability 0.5), horizontal flip, a 40x40 crop, random
erasing with probability 0.5, pixels divided by 255. The milder protocol of seeds 001/004
(+-10 % zoom and shift, +-10 degrees, horizontal mirroring, each transform drawn for every
image as Keras' ImageDataGenerator does; no erasing, which neither paper uses) is `strength="mild"`.

Unlike the paper's public code (per-sample PIL transforms in the main process), everything
here works on whole uint8 batches on the training device: one `affine_grid`-style grid plus one
`grid_sample` does scale, shift, rotation, flip *and* the random 40x40 crop at once (when every
geometric probability is 0, an exact integer crop and mirror replace the resampling, so p=0 is
exactly the identity); erasing is one masked write. A batch's randomness is one draw from the
caller's `torch.Generator` (ten-crop training draws once more, for its crops' erasing), so the
same seed gives the same batch, and the whole VGG augmentation of a batch is 42 tensor
operators whatever its size (kernel launches on a GPU; benchmarks/step_ops.py). Ten-crop
(corners, centre and their mirror images, torchvision's TenCrop order) is ten strided views
stacked in one copy. Measured in benchmarks/data.py: about 20x the per-sample pipeline at
equal output (ten crops per image) and about 60x in images per second with one crop per
image, on 2 CPU cores.

Scale is a zoom of the content by s in [1-r, 1+r] about the image centre (the paper's
"rescaling"; its code uses RandomResizedCrop, which also changes the aspect ratio); borders
that come into view are filled with 0 as torchvision's RandomAffine does.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from fernas.dataset import CROP_SIZE as CROP, IMAGE_SIZE as IMAGE

# Per-strength presets. Probabilities are per image; ranges are symmetric (+-).
# "mild" draws every transform for every image (p=1) because Keras' ImageDataGenerator,
# which seeds 001/004 used, does so.
PRESETS: dict[str, dict[str, float]] = {
    "vgg": dict(p_scale=0.5, max_scale=0.2, p_shift=0.5, max_shift=0.2,
                p_rotate=0.5, max_degrees=10.0, p_flip=0.5, p_erase=0.5),
    "mild": dict(p_scale=1.0, max_scale=0.1, p_shift=1.0, max_shift=0.1,
                 p_rotate=1.0, max_degrees=10.0, p_flip=0.5, p_erase=0.0),
    # "none": the VGG ranges with every probability 0, so one override (p_flip=1, ...) turns on
    # exactly one transform of the paper's protocol.
    "none": dict(p_scale=0.0, max_scale=0.2, p_shift=0.0, max_shift=0.2,
                 p_rotate=0.0, max_degrees=10.0, p_flip=0.0, p_erase=0.0),
}
STRENGTHS = tuple(PRESETS)

# torchvision.transforms.RandomErasing defaults (what the VGG paper's code used).
ERASE_AREA = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 `(B, H, W)` or `(B, 1, H, W)` -> float32 `(B, 1, H, W)` in [0, 1].

    A floating-point input is taken to be in [0, 1] already and only gains the channel dim.
    """
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected (B, H, W) or (B, 1, H, W) grayscale images, got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


def _five(xf: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The five torchvision five-crop boxes of (B, 1, S, S) as views: tl, tr, bl, br, centre.

    torchvision's centre crop starts at int(round((S - size) / 2)).
    """
    s = xf.shape[-1]
    far, c = s - size, int(round((s - size) / 2.0))
    return [xf[..., :size, :size], xf[..., :size, far:], xf[..., far:, :size], xf[..., far:, far:],
            xf[..., c:c + size, c:c + size]]


def ten_crop(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Ten crops of every image in one batched op: `(B, 10, 1, size, size)` float in [0, 1].

    Order as torchvision's `TenCrop(size)`: top-left, top-right, bottom-left, bottom-right,
    centre of the image, then the same five of the horizontally flipped image. Ten strided
    views stacked into one copy (faster than a gather, and exact).
    """
    xf = to_float(x)
    if xf.shape[-2] != xf.shape[-1]:
        raise ValueError(f"ten_crop expects square images, got {xf.shape[-2]}x{xf.shape[-1]}")
    return torch.stack(_five(xf, size) + _five(xf.flip(-1), size), dim=1)


def center_crop(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Centre `size` x `size` crop (torchvision's rounding): `(B, 1, size, size)` float."""
    xf = to_float(x)
    h, w = xf.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return xf[:, :, top:top + size, left:left + size].contiguous()


def _params(strength: str, erasing: bool, overrides: dict) -> dict[str, float]:
    if strength not in PRESETS:
        raise ValueError(f"unknown augmentation strength {strength!r}; expected one of {', '.join(STRENGTHS)}")
    p = dict(PRESETS[strength])
    unknown = set(overrides) - set(p)
    if unknown:
        raise TypeError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
    if not erasing:
        p["p_erase"] = 0.0
    p.update({k: float(v) for k, v in overrides.items() if v is not None})
    return p


def warmup_overrides(strength: str, fraction: float) -> dict[str, float]:
    """Overrides that scale a preset's probabilities by `fraction` (0: no augmentation but the
    random crop and the mirror; 1 and more: the preset itself), for an augmentation warm-up.

    The mirror keeps its probability: it changes no expression. Only probabilities move, not
    ranges: an image is either left alone or transformed as the preset would transform it.
    """
    f = min(max(float(fraction), 0.0), 1.0)
    return {k: v * f for k, v in _params(strength, True, {}).items() if k.startswith("p_") and k != "p_flip"}


# A batch's randomness is one `torch.rand` call of (B, DRAWS) numbers, each U[0, 1), in these
# columns: a few kernels per batch instead of one or more per quantity, so short GPU trials are
# not bound by kernel launches here.  Every column is drawn whatever the probabilities, so the
# stream (and so the crops and erasing) does not depend on them.
GATES = slice(0, 5)  # a transform applies where u < its p: scale, shift, rotation, mirror, erasing
VALUES = slice(5, 9)  # scale, x shift, y shift, angle, mapped onto their ranges
OFFSETS = slice(9, 11)  # the window's left and top offset
ERASE = slice(11, 15)  # the erased rectangle's area, log aspect ratio, top and left
DRAWS = 15
_MIRROR = 3  # the mirror's gate, a column of GATES
_ERASE_GATE = 4


def _device_tensor(values, device: torch.device) -> torch.Tensor:
    """float32 constants on the device (built once per setting, see the caches below)."""
    return torch.tensor(values, dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=64)
def _constants(device: torch.device, p_items: tuple, height: int, width: int, size: int) -> dict:
    """The device tensors that map one batch's draws onto the settings `p_items` (sorted items of
    `_params`) for `size` x `size` windows of height x width images; cached, so a step copies
    nothing from the host (a warm-up's epochs add one entry each)."""
    p = dict(p_items)
    t = functools.partial(_device_tensor, device=device)
    ms, sh, deg = p["max_scale"], p["max_shift"], math.radians(p["max_degrees"])
    return {
        "gate_p": t([p["p_scale"], p["p_shift"], p["p_rotate"], p["p_flip"], p["p_erase"]]),
        "gate_of_value": torch.tensor([0, 1, 1, 2], device=device),  # both shifts share one gate
        # scale in [1-ms, 1+ms]; a shift of f * side is 2f in normalised coordinates (which span
        # 2); the angle in radians.  An ungated value is the identity's.
        "lo": t([1 - ms, -2 * sh, -2 * sh, -deg]), "span": t([2 * ms, 4 * sh, 4 * sh, 2 * deg]),
        "identity": t([1.0, 0.0, 0.0, 0.0]),
        "windows": t([width - size + 1, height - size + 1]),  # offsets 0..W-size inclusive, like RandomCrop
        **_window_map(device, height, width, size),
    }


def _window_map(device: torch.device, height: int, width: int, size: int) -> dict:
    """Constants of the map from a window's normalised coordinates to the image's:
    x = ax * x_win + (2 * left + size) / W - 1 with ax = size / W (-size / W mirrors), y likewise."""
    t = functools.partial(_device_tensor, device=device)
    return {"keep": t([size / width]), "mirror": t([-size / width]), "y_scale": t([size / height]),
            "centre": t([size / width - 1, size / height - 1]), "step": t([2 / width, 2 / height]),
            "lin": (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1,  # pixel centres
            "phase": t([math.pi / 2, 0.0])}  # sin(a + pi/2) = cos(a)


@functools.lru_cache(maxsize=16)
def _erase_constants(device: torch.device, height: int, width: int, area: tuple, ratio: tuple) -> dict:
    """The device tensors of `_erase_mask` for height x width images; cached like `_constants`."""
    t = functools.partial(_device_tensor, device=device)
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    return {"lo": t([area[0] * height * width, lr[0] / 2]),  # area in pixels, half the log ratio
            "span": t([(area[1] - area[0]) * height * width, (lr[1] - lr[0]) / 2]),
            "sign": t([1.0, -1.0]), "ones": t([1.0, 1.0]), "most": t([height, width]),
            "pos": torch.arange(max(height, width), device=device, dtype=torch.float32)}


def _geometry(r: torch.Tensor, c: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates (B, 5) bool and the per-image scale, x shift, y shift, angle (B, 4), identity where
    their gate is off, from a batch's draws `r` (B, >= 9)."""
    on = r[:, GATES] < c["gate_p"]
    val = torch.addcmul(c["lo"], r[:, VALUES], c["span"])
    return on, torch.where(on.index_select(1, c["gate_of_value"]), val, c["identity"])


def _warp(xf: torch.Tensor, val: torch.Tensor, off: torch.Tensor | None, mirror: torch.Tensor | None,
          c: dict, size: int) -> torch.Tensor:
    """Sample a `size` x `size` window of the affinely transformed images: `(B, 1, size, size)`.

    val (B, 4): scale s, shift (tx, ty), angle a of each image; the forward transform scales by
    s, rotates by a and shifts by t about the centre, so the inverse that grid_sample needs is
    in = R(-a) (out - t) / s.  off (B, 2) float: the window's left and top offset (None: 0);
    mirror (B,) bool mirrors the window (x_win -> -x_win), which costs nothing extra.  Output
    pixel (i, j) of image b is pixel (top+i, left+j) of the transformed image: the crop is itself
    an affine map, composed in, then one bilinear `grid_sample` with zero fill (torchvision
    RandomAffine's default fill), align_corners=False.  The grid is built by broadcasting (a
    batched 3x2 matmul is slow on CPU for small images).
    """
    s, shift, ang = val[:, :1], val[:, 1:3], val[:, 3:]
    cs = torch.sin(ang + c["phase"]) / s  # (B, 2): cos(a) / s, sin(a) / s
    d = (c["centre"] if off is None else torch.addcmul(c["centre"], off, c["step"])) - shift  # (B, 2)
    ax = c["keep"] if mirror is None else torch.where(mirror[:, None], c["mirror"], c["keep"])  # (B or 1, 1)
    gx_col = torch.addcmul(d[:, :1], ax, c["lin"])  # (B, S): x - tx at each window column
    gy_row = torch.addcmul(d[:, 1:], c["y_scale"], c["lin"])  # (B, S): y - ty at each window row
    cos, sin = cs[:, :1, None], cs[:, 1:, None]  # (B, 1, 1)
    gx = torch.addcmul(cos * gx_col[:, None, :], sin, gy_row[:, :, None])  # (B, S, S)
    gy = torch.addcmul(cos * gy_row[:, :, None], sin, gx_col[:, None, :], value=-1)
    grid = torch.stack((gx, gy), dim=-1)  # (B, S, S, 2)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _moves(p: dict) -> bool:
    """Whether the settings can move pixels at all; decided from them, not the draws: no device
    sync, and with every probability 0 an exact integer crop keeps p=0 exactly the identity."""
    return any(p[k] > 0 and p[m] > 0 for k, m in
               (("p_scale", "max_scale"), ("p_shift", "max_shift"), ("p_rotate", "max_degrees")))


def _flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images (B, 1, H, W) whose flag in flip (B,) is set; exact, no per-sample Python."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _window(xf: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Exact integer crop per image (no resampling): `(B, 1, size, size)`."""
    ar = torch.arange(size, device=xf.device)
    rows = (top[:, None] + ar)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (B, 1, size)
    b = torch.arange(xf.shape[0], device=xf.device)[:, None, None]
    return xf[:, 0][b, rows, cols].unsqueeze(1)


def _erase_mask(u: torch.Tensor, on: torch.Tensor, c: dict, height: int, width: int) -> torch.Tensor:
    """The rectangles to erase, `(B, 1, H, W)` bool, from draws u (B, 4) (area, log aspect ratio,
    top, left) and gates on (B,).  Area a and ratio r give sides h = sqrt(a r), w = sqrt(a / r);
    torchvision retries a rectangle that does not fit up to ten times, here its sides are
    clamped to the image instead (no loop)."""
    v = torch.addcmul(c["lo"], u[:, :2], c["span"])  # (B, 2): area in pixels, log(r) / 2
    hw = torch.exp(v[:, 1:] * c["sign"]) * v[:, :1].sqrt()  # (B, 2): h, w
    hw = torch.clamp(hw.round_(), c["ones"], c["most"])
    tl = (c["most"] + 1 - hw).mul_(u[:, 2:]).floor_()  # (B, 2): top, left
    inside = (c["pos"] >= tl[:, :, None]) & (c["pos"] < (tl + hw)[:, :, None])  # (B, 2, max(H, W))
    rows = inside[:, 0, :height] & on[:, None]  # (B, H)
    # A bool mask and one masked write: cheaper on CPU than writing the rectangles by flat
    # index (measured), and on accelerators it needs no host sync.
    return (rows[:, :, None] & inside[:, 1, None, :width]).unsqueeze(1)


def random_erase(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None,
                 area=ERASE_AREA, ratio=ERASE_RATIO, value: float = 0.0, inplace: bool = False) -> torch.Tensor:
    """Random erasing (Zhong et al.; torchvision defaults) on a float batch `(B, C, H, W)`.

    Per image with probability p, a rectangle of area fraction U(area) and aspect ratio
    log-uniform in `ratio` is set to `value` (sides clamped to the image, see `_erase_mask`).
    """
    B, _, H, W = x.shape
    c = _erase_constants(x.device, H, W, tuple(area), tuple(ratio))
    r = torch.rand(B, 5, generator=generator, device=x.device)
    mask = _erase_mask(r[:, 1:], r[:, 0] < p, c, H, W)
    return x.masked_fill_(mask, value) if inplace else x.masked_fill(mask, value)


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, strength: str = "vgg",
                  erasing: bool = True, **overrides: float) -> torch.Tensor:
    """Augment a batch for training: uint8 `(B, 48, 48)` / `(B, 1, 48, 48)` -> float32 `(B, 1, 40, 40)`.

    strength: "vgg" (seeds 000/002), "mild" (seeds 001/004) or "none" (every probability 0:
    the exact centre crop). `erasing=False` turns random erasing off. Keyword overrides set
    single settings of the preset: p_scale, max_scale, p_shift, max_shift, p_rotate,
    max_degrees, p_flip, p_erase. `generator` must live on x's device; None uses torch's
    default generator for that device. The result is on x's device.
    """
    p = _params(strength, erasing, overrides)
    xf = to_float(x)
    B, _, H, W = xf.shape
    if H < CROP or W < CROP:
        raise ValueError(f"augment_batch needs images of at least {CROP}x{CROP}, got {H}x{W}")
    if B == 0:
        return xf.new_zeros((0, 1, CROP, CROP))
    if strength == "none" and not any(v for k, v in p.items() if k.startswith("p_")):
        return center_crop(xf)
    c = _constants(xf.device, tuple(sorted(p.items())), H, W, CROP)
    r = torch.rand(B, DRAWS, generator=generator, device=xf.device)
    on, val = _geometry(r, c)
    # One random 40x40 window per image. Mirroring the window equals cropping the mirrored
    # image at the mirrored offset, and the offsets are symmetric, so mirroring after the crop
    # samples the paper's flip-then-crop exactly.
    off = (r[:, OFFSETS] * c["windows"]).floor_()  # (B, 2): left, top
    if _moves(p):
        out = _warp(xf, val, off, on[:, _MIRROR], c, CROP)
    else:  # exact integer crop and mirror: p=0 is exactly the identity
        off = off.long()
        out = _flip_where(_window(xf, off[:, 1], off[:, 0], CROP), on[:, _MIRROR])
    if p["p_erase"] > 0:
        ec = _erase_constants(xf.device, CROP, CROP, ERASE_AREA, ERASE_RATIO)
        out.masked_fill_(_erase_mask(r[:, ERASE], on[:, _ERASE_GATE], ec, CROP, CROP), 0.0)
    return out.clamp_(0.0, 1.0)


def train_crops_all(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
                    strength: str = "vgg", erasing: bool = True, **overrides: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The VGG paper's public training input: all ten crops of every augmented image.

    Geometry (scale, shift, rotation) is applied to the whole 48x48 image, then the ten 40x40
    crops are taken and random erasing is drawn per crop, as in the reference code. The
    horizontal flip is not applied: the ten crops of a mirrored image are the mirrored ten crops
    of the image (TenCrop includes both), so the flip only reorders the set of training crops.
    Values stay in [0, 1] (bilinear weights are convex, erasing writes 0), so no clamp pass.
    Returns `x10 (B*10, 1, 40, 40)` and `y10 (B*10,)`, each label repeated ten times in place
    (crops of image b are rows 10b .. 10b+9).
    """
    p = _params(strength, erasing, overrides)
    xf = to_float(x)
    B, _, H, W = xf.shape
    r = torch.rand(B, VALUES.stop, generator=generator, device=xf.device)  # drawn whatever p: one stream
    if _moves(p):  # the geometry moves the whole image: a window of its full size, at offset 0
        c = _constants(xf.device, tuple(sorted(p.items())), H, W, H)
        xf = _warp(xf, _geometry(r, c)[1], None, None, c, H)
    crops = ten_crop(xf).reshape(B * 10, 1, CROP, CROP)
    if p["p_erase"] > 0:
        crops = random_erase(crops, p["p_erase"], generator, inplace=True)
    return crops, y.repeat_interleave(10)
