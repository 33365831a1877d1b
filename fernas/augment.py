"""On-device batched augmentation and ten-crop for 48x48 grayscale faces.

Follows the training protocol of the VGG paper (Khaireddin & Chen, seeds 000/002):
random rescaling by up to +-20 %, horizontal and vertical shift by up to +-20 %, rotation by up
to +-10 degrees (each applied with probability 0.5), horizontal flip, a 40x40 crop, random
erasing with probability 0.5, pixels divided by 255. The milder protocol of seeds 001/004
(+-10 % zoom and shift, +-10 degrees, horizontal mirroring, each transform drawn for every
image as Keras' ImageDataGenerator does) is `strength="mild"`.

Unlike the paper's public code (per-sample PIL transforms in the main process), everything
here works on whole uint8 batches on the training device: one `affine_grid`-style grid plus one
`grid_sample` does scale, shift, rotation, flip *and* the random 40x40 crop at once (when every
geometric probability is 0, an exact integer crop and mirror replace the resampling, so p=0 is
exactly the identity); erasing is one masked write. All randomness comes from the caller's
`torch.Generator`, so the same seed gives the same batch. Ten-crop (corners, centre and their
mirror images, torchvision's TenCrop order) is ten strided views stacked in one copy.
Measured in benchmarks/data.py: about 20x the per-sample pipeline at equal output (ten crops
per image) and about 60x in images per second with one crop per image, on 2 shared CPU cores.

Scale is a zoom of the content by s in [1-r, 1+r] about the image centre (the paper's
"rescaling"; its code uses RandomResizedCrop, which also changes the aspect ratio); borders
that come into view are filled with 0 as torchvision's RandomAffine does.
"""

from __future__ import annotations

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
                 p_rotate=1.0, max_degrees=10.0, p_flip=0.5, p_erase=0.5),
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


def _uniform(n: int, lo: float, hi: float, g, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _affine(n: int, p: dict, g, device) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Per-image inverse affine maps (output -> input, normalised coords) and flip flags.

    Returns theta (B, 2, 3), flip (B,) bool, and whether resampling is needed at all (False
    when the settings make the geometry the identity: an exact integer crop will do).
    The forward transform scales by s, rotates by a and shifts by t about the centre; its
    inverse, which grid_sample needs, is  in = R(-a) (out - t) / s. The horizontal flip is
    applied afterwards by indexing, which is exact (no resampling of unmoved images).
    Every draw happens even when a probability is 0, so the stream of random numbers (and
    so the crops and erasing that follow) does not depend on the probabilities.
    """
    def gate(prob):  # (B,) bool: apply this transform to this image
        return torch.rand(n, generator=g, device=device) < prob

    s = torch.where(gate(p["p_scale"]), _uniform(n, 1 - p["max_scale"], 1 + p["max_scale"], g, device),
                    torch.ones(n, device=device))
    shift_on = gate(p["p_shift"])
    # A shift of f * side in pixels is 2f in normalised coordinates (which span 2).
    tx = torch.where(shift_on, _uniform(n, -p["max_shift"], p["max_shift"], g, device) * 2, 0.0)
    ty = torch.where(shift_on, _uniform(n, -p["max_shift"], p["max_shift"], g, device) * 2, 0.0)
    ang = torch.where(gate(p["p_rotate"]),
                      _uniform(n, -p["max_degrees"], p["max_degrees"], g, device) * (math.pi / 180), 0.0)
    flip = gate(p["p_flip"])
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([
        torch.stack([cos, sin, -(cos * tx + sin * ty)], dim=1),
        torch.stack([-sin, cos, -(-sin * tx + cos * ty)], dim=1),
    ], dim=1)  # (B, 2, 3)
    # Decided from the settings, not the draws: no device sync, and p=0 stays exactly identity.
    moved = any(p[k] > 0 and p[m] > 0 for k, m in
                (("p_scale", "max_scale"), ("p_shift", "max_shift"), ("p_rotate", "max_degrees")))
    return theta, flip, moved


def _flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images (B, 1, H, W) whose flag in flip (B,) is set; exact, no per-sample Python."""
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _warp(xf: torch.Tensor, theta: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int,
          flip: torch.Tensor | None = None) -> torch.Tensor:
    """Sample a `size` x `size` window of the affinely transformed images: `(B, 1, size, size)`.

    Output pixel (i, j) of image b is pixel (top[b]+i, left[b]+j) of the transformed full image,
    so the random crop costs nothing extra: the crop is itself an affine map from the window's
    normalised coordinates to the full image's (x48 = size/W * x_win + (2*left + size)/W - 1),
    composed into theta, then one `affine_grid`-equivalent grid and one bilinear
    `grid_sample` with zero fill (torchvision RandomAffine's default fill), align_corners=False.
    flip (B,) bool mirrors the window too (x_win -> -x_win), saving a separate pass.
    """
    B, _, H, W = xf.shape
    crop = torch.zeros(B, 3, 3, dtype=theta.dtype, device=theta.device)
    crop[:, 0, 0] = size / W if flip is None else torch.where(flip, -size / W, size / W)
    crop[:, 1, 1] = size / H
    crop[:, 0, 2] = (2 * left.to(theta.dtype) + size) / W - 1
    crop[:, 1, 2] = (2 * top.to(theta.dtype) + size) / H - 1
    crop[:, 2, 2] = 1
    t = (theta @ crop).to(xf.dtype)  # (B, 2, 3): window coords -> input coords
    # affine_grid by broadcasting (its batched 3x2 matmul is slow on CPU for small images):
    # grid[b, i, j] = t[b] @ (xs[j], ys[i], 1) with xs, ys the window's pixel centres.
    lin = (torch.arange(size, device=xf.device, dtype=xf.dtype) * 2 + 1) / size - 1  # (size,)
    xs, ys = lin[None, None, :, None], lin[None, :, None, None]  # (1, 1, S, 1), (1, S, 1, 1)
    grid = t[:, None, None, :, 0] * xs + t[:, None, None, :, 1] * ys + t[:, None, None, :, 2]  # (B, S, S, 2)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _window(xf: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Exact integer crop per image (no resampling): `(B, 1, size, size)`."""
    ar = torch.arange(size, device=xf.device)
    rows = (top[:, None] + ar)[:, :, None]  # (B, size, 1)
    cols = (left[:, None] + ar)[:, None, :]  # (B, 1, size)
    b = torch.arange(xf.shape[0], device=xf.device)[:, None, None]
    return xf[:, 0][b, rows, cols].unsqueeze(1)


def random_erase(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None,
                 area=ERASE_AREA, ratio=ERASE_RATIO, value: float = 0.0, inplace: bool = False) -> torch.Tensor:
    """Random erasing (Zhong et al.; torchvision defaults) on a float batch `(B, C, H, W)`.

    Per image with probability p, a rectangle of area fraction U(area) and aspect ratio
    log-uniform in `ratio` is set to `value`. torchvision retries a rectangle that does not
    fit up to ten times; here its sides are clamped to the image instead (no loop).
    """
    B, _, H, W = x.shape
    dev = x.device
    g = generator
    on = torch.rand(B, generator=g, device=dev) < p
    frac = _uniform(B, area[0], area[1], g, dev) * (H * W)
    r = torch.exp(_uniform(B, math.log(ratio[0]), math.log(ratio[1]), g, dev))
    h = torch.sqrt(frac * r).round().clamp(1, H).long()
    w = torch.sqrt(frac / r).round().clamp(1, W).long()
    top = (torch.rand(B, generator=g, device=dev) * (H - h + 1).float()).long()
    left = (torch.rand(B, generator=g, device=dev) * (W - w + 1).float()).long()
    rows = torch.arange(H, device=dev)[None, :]
    cols = torch.arange(W, device=dev)[None, :]
    in_r = (rows >= top[:, None]) & (rows < (top + h)[:, None]) & on[:, None]  # (B, H)
    in_c = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
    mask = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)  # (B, 1, H, W) the rectangles
    # A bool mask and one masked write: cheaper on CPU than writing the rectangles by flat
    # index (measured), and on accelerators it needs no host sync.
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
    dev = xf.device
    if B == 0:
        return xf.new_zeros((0, 1, CROP, CROP))
    if strength == "none" and not any(v for k, v in p.items() if k.startswith("p_")):
        return center_crop(xf)
    theta, flip, moved = _affine(B, p, generator, dev)
    # One random 40x40 window per image (offsets 0..8 inclusive, like RandomCrop). Mirroring
    # the window equals cropping the mirrored image at the mirrored offset, and the offsets
    # are symmetric, so flipping after the crop samples the paper's flip-then-crop exactly.
    top = torch.randint(0, H - CROP + 1, (B,), generator=generator, device=dev)
    left = torch.randint(0, W - CROP + 1, (B,), generator=generator, device=dev)
    if moved:
        out = _warp(xf, theta, top, left, CROP, flip)
    else:  # exact integer crop and mirror: p=0 is exactly the identity
        out = _flip_where(_window(xf, top, left, CROP), flip)
    if p["p_erase"] > 0:
        out = random_erase(out, p["p_erase"], generator, inplace=True)
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
    dev = xf.device
    if any(v for k, v in p.items() if k.startswith("p_") and k != "p_erase"):
        theta, _, moved = _affine(B, p, generator, dev)
        if moved:
            zeros = torch.zeros(B, dtype=torch.long, device=dev)
            xf = _warp(xf, theta, zeros, zeros, H)
    crops = ten_crop(xf).reshape(B * 10, 1, CROP, CROP)
    if p["p_erase"] > 0:
        crops = random_erase(crops, p["p_erase"], generator, inplace=True)
    return crops, y.repeat_interleave(10)
