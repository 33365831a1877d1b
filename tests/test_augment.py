"""Batched augmentation and ten-crop (fernas.augment): shapes, determinism, identities, torchvision parity."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T

from fernas.augment import (PRESETS, augment_batch, center_crop, random_erase, ten_crop, to_float, train_crops_all,
                            warmup_overrides)


def _images(n=6, seed=0):
    return torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _windows(img48: torch.Tensor) -> torch.Tensor:
    """All 81 40x40 windows of one (48, 48) float image: (81, 40, 40)."""
    return img48.unfold(0, 40, 1).unfold(1, 40, 1).reshape(-1, 40, 40)


def _is_window_of(out40: torch.Tensor, img48: torch.Tensor) -> bool:
    return bool((( _windows(img48) - out40).abs().amax(dim=(1, 2)) < 1e-5).any())


@pytest.mark.parametrize("shape", [(5, 48, 48), (5, 1, 48, 48)])
@pytest.mark.parametrize("strength", ["vgg", "mild", "none"])
def test_shape_dtype_range(shape, strength):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = augment_batch(x, torch.Generator().manual_seed(0), strength=strength)
    assert out.shape == (5, 1, 40, 40) and out.dtype == torch.float32 and out.device == x.device
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_same_seed_same_output_and_different_seed_differs():
    x = _images(16)
    a = augment_batch(x, torch.Generator().manual_seed(3))
    b = augment_batch(x, torch.Generator().manual_seed(3))
    c = augment_batch(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_none_is_exact_centre_crop_and_to_float_is_exact():
    x = _images()
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="none")
    assert torch.equal(out, to_float(x)[:, :, 4:44, 4:44])
    assert torch.equal((to_float(x) * 255).round().to(torch.uint8)[:, 0], x)


def test_all_probabilities_zero_gives_unchanged_random_windows():
    x = _images()
    zero = dict(p_scale=0, p_shift=0, p_rotate=0, p_flip=0, p_erase=0)
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="vgg", **zero)
    xf = to_float(x)[:, 0]
    assert all(_is_window_of(out[i, 0], xf[i]) for i in range(len(x)))
    # the windows really are random (not all the centre)
    assert not torch.equal(out, center_crop(x))


def test_a_warm_up_scales_every_probability_but_the_mirrors():
    vgg = PRESETS["vgg"]
    start = warmup_overrides("vgg", 0)
    assert set(start) == {"p_scale", "p_shift", "p_rotate", "p_erase"} and not any(start.values())
    assert warmup_overrides("vgg", 0.25) == {k: vgg[k] / 4 for k in start}
    assert warmup_overrides("vgg", 3) == {k: vgg[k] for k in start}  # past the warm-up: the preset
    assert not any(warmup_overrides("none", 0.5).values())
    # at its start a warm-up draws random windows, mirrored or not, nothing else
    x = _images()
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="vgg", **start)
    xf = to_float(x)[:, 0]
    assert all(_is_window_of(out[i, 0], xf[i]) or _is_window_of(out[i, 0].flip(-1), xf[i]) for i in range(len(x)))


def test_flip_flips():
    x = _images()
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="none", p_flip=1.0)
    xf = to_float(x)[:, 0]
    assert all(_is_window_of(out[i, 0], xf[i].flip(-1)) for i in range(len(x)))
    # a face lit from the left is lit from the right after the flip
    half = torch.zeros(4, 48, 48, dtype=torch.uint8)
    half[:, :, :24] = 255
    f = augment_batch(half, torch.Generator().manual_seed(0), strength="none", p_flip=1.0)
    assert (f[:, 0, :, -4:] == 1).all() and (f[:, 0, :, :4] == 0).all()


def test_rotation_moves_pixels():
    x = _images()
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="none", p_rotate=1.0)
    xf = to_float(x)[:, 0]
    assert not any(_is_window_of(out[i, 0], xf[i]) for i in range(len(x)))


def test_vgg_geometry_changes_images_with_probability_about_half():
    x = _images(400)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, g, strength="vgg", erasing=False, p_flip=0)
    xf = to_float(x)[:, 0]
    moved = sum(not _is_window_of(out[i, 0], xf[i]) for i in range(len(x))) / len(x)
    # scale, shift, rotation each at p=0.5: an image is untouched with probability 1/8
    assert 0.8 < moved < 0.95


def test_erasing_blanks_a_rectangle_of_the_paper_size():
    white = torch.full((200, 48, 48), 255, dtype=torch.uint8)
    out = augment_batch(white, torch.Generator().manual_seed(0), strength="none", p_erase=1.0)
    erased = (out == 0).sum(dim=(1, 2, 3)).float() / (40 * 40)
    assert (erased > 0).all()
    assert float(erased.min()) >= 0.01 and float(erased.max()) <= 0.40
    # with erasing off nothing is blanked
    off = augment_batch(white, torch.Generator().manual_seed(0), strength="vgg", erasing=False, p_scale=0,
                        p_shift=0, p_rotate=0)
    assert (off == 1).all()


def test_only_the_vgg_protocol_erases():
    """Seeds 001/004 (`mild`) list zoom, rotation, shift and mirroring; erasing is the VGG paper's."""
    white = torch.full((400, 48, 48), 255, dtype=torch.uint8)
    geometry_off = dict(p_scale=0, p_shift=0, p_rotate=0, p_flip=0)
    erased = {s: float((augment_batch(white, torch.Generator().manual_seed(0), strength=s, **geometry_off) == 0)
                       .flatten(1).any(1).float().mean()) for s in ("vgg", "mild", "none")}
    assert 0.4 < erased["vgg"] < 0.6 and erased["mild"] == erased["none"] == 0.0, erased


def test_erasing_probability_half():
    white = torch.ones(1000, 1, 40, 40)
    out = random_erase(white, 0.5, torch.Generator().manual_seed(0))
    frac = float(((out == 0).flatten(1).any(1)).float().mean())
    assert 0.44 < frac < 0.56


def test_ten_crop_equals_torchvision():
    x = _images(4)
    ours = ten_crop(x)
    ref = torch.stack([torch.stack(T.TenCrop(40)(to_float(x)[i])) for i in range(len(x))])
    assert ours.shape == (4, 10, 1, 40, 40)
    assert torch.equal(ours, ref)
    assert torch.equal(center_crop(x), T.CenterCrop(40)(to_float(x)))


def test_train_crops_all_repeats_labels_in_place():
    x, y = _images(3), torch.tensor([2, 0, 5])
    x10, y10 = train_crops_all(x, y, torch.Generator().manual_seed(0), strength="none", erasing=False)
    assert x10.shape == (30, 1, 40, 40) and y10.tolist() == [2] * 10 + [0] * 10 + [5] * 10
    assert torch.equal(x10, ten_crop(x).reshape(30, 1, 40, 40))
    a, _ = train_crops_all(x, y, torch.Generator().manual_seed(1))
    b, _ = train_crops_all(x, y, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (30, 1, 40, 40)


def test_bad_arguments():
    with pytest.raises(ValueError):
        augment_batch(_images(), strength="extreme")
    with pytest.raises(TypeError):
        augment_batch(_images(), p_warp=1.0)
    with pytest.raises(ValueError):
        to_float(torch.zeros(2, 3, 48, 48, dtype=torch.uint8))


def test_empty_batch():
    assert augment_batch(torch.zeros(0, 48, 48, dtype=torch.uint8)).shape == (0, 1, 40, 40)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_device_and_is_deterministic():
    x = _images(64).cuda()
    a = augment_batch(x, torch.Generator(device="cuda").manual_seed(0))
    b = augment_batch(x, torch.Generator(device="cuda").manual_seed(0))
    assert a.is_cuda and torch.equal(a, b)
    # CUDA divides by a scalar as a multiply by its reciprocal: equal to within one float32 ulp at 1.0
    assert torch.allclose(ten_crop(x).cpu(), ten_crop(x.cpu()), rtol=0, atol=1.2e-7)


def _reference_warp(xf, val, off, mirror, size):
    """The window of the transformed images through an explicit 2x3 matrix and torch's own
    affine_grid: the inverse transform composed with the window's map, as the docstring derives."""
    B, _, H, W = xf.shape
    s, tx, ty, a = val.unbind(1)
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    theta = torch.zeros(B, 3, 3)
    theta[:, 0] = torch.stack([cos, sin, -(cos * tx + sin * ty)], 1)
    theta[:, 1] = torch.stack([-sin, cos, -(-sin * tx + cos * ty)], 1)
    theta[:, 2, 2] = 1
    crop = torch.zeros(B, 3, 3)
    crop[:, 0, 0] = torch.where(mirror, -size / W, size / W)
    crop[:, 1, 1] = size / H
    crop[:, 0, 2] = (2 * off[:, 0] + size) / W - 1
    crop[:, 1, 2] = (2 * off[:, 1] + size) / H - 1
    crop[:, 2, 2] = 1
    grid = F.affine_grid((theta @ crop)[:, :2], (B, 1, size, size), align_corners=False)
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_warp_equals_affine_grid_of_the_composed_matrix():
    from fernas.augment import _constants, _params, _warp
    x = to_float(_images(8))
    g = torch.Generator().manual_seed(5)
    val = torch.stack([0.8 + 0.4 * torch.rand(8, generator=g), 0.8 * torch.rand(8, generator=g) - 0.4,
                       0.8 * torch.rand(8, generator=g) - 0.4, torch.rand(8, generator=g) - 0.5], 1)
    off = torch.randint(0, 9, (8, 2), generator=g).float()
    mirror = torch.rand(8, generator=g) < 0.5
    c = _constants(x.device, tuple(sorted(_params("vgg", True, {}).items())), 48, 48, 40)
    assert torch.allclose(_warp(x, val, off, mirror, c, 40), _reference_warp(x, val, off, mirror, 40), atol=1e-5)


def test_a_whole_pixel_shift_moves_the_window_content_by_that_many_pixels():
    from fernas.augment import _constants, _params, _warp
    x = to_float(_images(2))
    k = 3  # pixels to the right and 2 down: the output at (i, j) shows the input at (i - 2, j - 3)
    val = torch.tensor([[1.0, 2 * k / 48, 2 * 2 / 48, 0.0]] * 2)
    off = torch.tensor([[4.0, 4.0]] * 2)
    c = _constants(x.device, tuple(sorted(_params("vgg", True, {}).items())), 48, 48, 40)
    out = _warp(x, val, off, torch.zeros(2, dtype=torch.bool), c, 40)
    assert torch.allclose(out[:, 0], x[:, 0, 2:42, 1:41], atol=1e-5)


def test_window_offsets_cover_every_position_uniformly():
    x = torch.arange(48, dtype=torch.uint8).repeat(48, 1)[None].repeat(4000, 1, 1)  # pixel value = column
    out = augment_batch(x, torch.Generator().manual_seed(0), strength="vgg", p_erase=0, p_flip=0,
                        p_scale=0, p_shift=0, p_rotate=0.0)
    left = (out[:, 0, 0, 0] * 255).round().long()
    counts = torch.bincount(left, minlength=9)
    assert counts.shape == (9,) and int(counts.min()) > 4000 / 9 * 0.8


def test_images_smaller_than_the_crop_are_refused():
    with pytest.raises(ValueError, match="at least 40x40, got 36x36"):
        augment_batch(torch.zeros(2, 36, 36, dtype=torch.uint8))


def test_ten_crop_training_draws_the_same_stream_whatever_the_probabilities():
    # the erasing of the crops must not shift because the geometry is off (p 0) or on (p tiny)
    x, y = torch.full((8, 48, 48), 255, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)  # 0 where erased
    off = dict(p_scale=0.0, p_shift=0.0, p_rotate=0.0, p_flip=0.0)
    tiny = dict(p_scale=1e-12, p_shift=1e-12, p_rotate=1e-12, p_flip=0.0)
    a, _ = train_crops_all(x, y, torch.Generator().manual_seed(2), **off)
    b, _ = train_crops_all(x, y, torch.Generator().manual_seed(2), **tiny)
    assert torch.equal(a < 0.5, b < 0.5) and bool((a < 0.5).any())
