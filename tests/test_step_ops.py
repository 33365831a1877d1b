"""Operators per training step (benchmarks/step_ops.py): what a short GPU trial pays in launches."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import step_ops  # noqa: E402
from fernas.augment import augment_batch  # noqa: E402
from fernas.genome import load_genome  # noqa: E402


def _images(n=16):
    return torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_the_counter_counts_compute_and_views_apart():
    x = torch.ones(4, 4)
    with step_ops.OpCounter() as n:
        y = (x + 1)[:2].unsqueeze(0)
        y.mul_(2)
    assert n.compute == 2 and n.views == 2 and n.counts["aten.add"] == 1


def test_a_batch_draws_its_randomness_in_one_call_and_augments_in_few_operators():
    augment_batch(_images(), torch.Generator().manual_seed(0))  # builds the cached constants
    with step_ops.OpCounter() as n:
        augment_batch(_images(), torch.Generator().manual_seed(0))
    # one draw; the whole VGG augmentation (warp, crop, mirror, erasing) in 42 operators (it was 129)
    assert n.counts["aten.rand"] == 1 and n.compute <= 45


def test_a_step_of_the_mobilenet_seed_in_cuda_form():
    got = step_ops.step_ops(load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json"), "vgg", torch.device("cpu"))
    # one fused SGD kernel and a handful of bookkeeping operators; the network's own forward and
    # backward in bf16 are most of what is left (284 operators before the augmentation and the
    # running sums were cut, 186 after)
    assert got["optimizer_cuda_form"] <= 3 and got["bookkeeping"] <= 6
    assert got["step_cuda_form"] == (got["augmentation"] + got["model_bf16_autocast"] + got["bookkeeping"]
                                     + got["optimizer_cuda_form"])
    assert got["step_cuda_form"] <= 190 and got["model_bf16_autocast"] / got["step_cuda_form"] > 0.7


def test_step_seconds_times_whole_epochs_of_real_steps():
    doc = load_genome(ROOT / "genomes" / "daocong_mobilenetv2.json")
    assert 0 < step_ops.step_seconds(doc, "none", torch.device("cpu"), steps=2) < 10


def test_every_optimizer_has_a_cuda_form_that_steps_on_cpu_tensors():
    from fernas.recipe import OPTIMIZERS, make_optimizer

    for name in OPTIMIZERS:
        params = [torch.nn.Parameter(torch.randn(3)) for _ in range(4)]
        opt = make_optimizer(params, {"optimizer": name})
        for p in params:
            p.grad = torch.ones(3)
        form = step_ops._cuda_form(opt, name)
        form.step()
        # one fused kernel (a few operators) where torch has one, else a foreach over the group
        assert step_ops._count(form.step) <= step_ops._count(opt.step), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_of_the_augmentation_replays_new_draws():
    import step_levers

    got = step_levers.augment_graph(32, torch.device("cuda"))  # asserts that two replays differ
    assert got["eager_ms"] > 0 and got["graph_ms"] > 0
