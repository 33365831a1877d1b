"""The built-in synthetic faces (fernas.demo_faces): determinism, balance, shapes, expressions."""

import pytest
import torch

from fernas.demo_faces import CLASSES, make_demo


def test_fer2013_classes_shapes_and_dtypes():
    ds = make_demo(70, 14, 21, seed=0)
    assert ds.classes == CLASSES == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (70, 14, 21)
    for sp in ds.splits().values():
        assert sp.x.dtype == torch.uint8 and sp.x.shape[1:] == (48, 48) and sp.y.dtype == torch.int64


def test_same_seed_same_images_other_seed_differs():
    a, b, c = make_demo(35, 7, 7, seed=3), make_demo(35, 7, 7, seed=3), make_demo(35, 7, 7, seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)


def test_classes_balanced_in_every_split():
    ds = make_demo(703, 140, 75, seed=1)
    for sp in ds.splits().values():
        counts = sp.class_counts(7)
        assert max(counts) - min(counts) <= 1


def test_val_and_test_do_not_depend_on_train_size():
    a, b = make_demo(70, 14, 14, seed=0), make_demo(140, 14, 14, seed=0)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.x, b.test.x)


def test_images_vary_and_expressions_show():
    ds = make_demo(1400, 0, 0, seed=0)
    x, y = ds.train.x.float(), ds.train.y
    # no two images alike, and a real spread of brightness (lighting, skin, background)
    assert len(torch.unique(ds.train.x.flatten(1), dim=0)) == 1400
    assert x.mean((1, 2)).std() > 15
    # the round open mouth of surprise makes its mouth region darker than neutral's on average
    mouth = x[:, 30:40, 18:30].mean((1, 2))
    assert mouth[y == CLASSES.index("surprise")].mean() < mouth[y == CLASSES.index("neutral")].mean() - 5
    # happy and neutral mean faces differ visibly
    mean = torch.stack([x[y == c].mean(0) for c in range(7)])
    assert (mean[3] - mean[6]).abs().max() > 3


def test_standard_faces_are_the_ones_the_committed_benchmarks_ran_on():
    # Pinned from the generator before difficulty levels existed: a change of any range of the
    # standard level moves these means by far more than a rounding difference between CPUs.
    ds = make_demo(35, 7, 7, seed=0)
    assert abs(ds.train.x.float().mean().item() - 130.512) < 0.05
    assert abs(ds.test.x.float().mean().item() - 142.654) < 0.05
    assert torch.equal(ds.train.x, make_demo(35, 7, 7, seed=0, difficulty="standard").train.x)


def test_hard_faces_same_labels_more_pose_and_noise():
    std, hard = make_demo(700, 7, 7, seed=2), make_demo(700, 7, 7, seed=2, difficulty="hard")
    assert hard.info["difficulty"] == "hard" and std.info["difficulty"] == "standard"
    assert torch.equal(std.train.y, hard.train.y) and not torch.equal(std.train.x, hard.train.x)

    def pixel_noise(x):  # mean absolute difference of horizontal neighbours
        x = x.float()
        return (x[:, :, 1:] - x[:, :, :-1]).abs().mean().item()

    assert pixel_noise(hard.train.x) > 1.5 * pixel_noise(std.train.x)
    # the face moves more: the image-to-image spread of the brightness centroid grows
    def centroid_spread(x):
        x = x.float()
        w = x / x.sum((1, 2), keepdim=True)
        cols = (w.sum(1) * torch.arange(48.0)).sum(1)
        return cols.std().item()

    assert centroid_spread(hard.train.x) > centroid_spread(std.train.x)
    with pytest.raises(ValueError, match="difficulty"):
        make_demo(7, 7, 7, difficulty="brutal")
