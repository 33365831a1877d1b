"""Decoding: seed parameter counts, random genomes build and train a step, repairs."""

import random

import pytest
import torch

from fernas import genome as g
from fernas.model import build_model, count_params, summarize
from conftest import GENOMES

# (file, reported parameters, allowed relative difference)
SEEDS = [
    ("vgg_khaireddin", 29_890_759, 0.001),  # public reference code: must match within 0.1%
    ("vulpe_random_search", 5_173_959, 0.001),
    ("sarmah_8conv", 5_228_487, 0.001),
    ("daocong_mobilenetv2", 784_263, 0.001),
]


@pytest.mark.parametrize("name, reported, tol", SEEDS)
def test_seed_parameter_counts(name, reported, tol):
    doc = g.load_genome(f"{GENOMES}/{name}.json")
    params = summarize(doc)["params"]
    assert abs(params - reported) / reported <= tol, (name, params, reported)
    assert doc["source"]["decoded_params_40x40"] == params  # the file states what it decodes to


def test_vgg_layout_matches_reference():
    model = build_model(g.load_genome(f"{GENOMES}/vgg_khaireddin.json"))
    assert count_params(model) == 29_890_759
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and all(c.bias is not None for c in convs)
    assert model.feature_size == 2  # 40 -> 20 -> 10 -> 5 -> 2


def _cheap_random_genomes(n, max_macs=60e6, seed=0):
    """Random genomes cheap enough to run on 2 CPU cores (the expensive ones are run on meta)."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        doc = g.random_genome(rng)
        if summarize(doc)["macs"] <= max_macs:
            out.append(doc)
    return out


def test_every_random_genome_builds_and_propagates_at_40_and_48():
    # Shape propagation and autograd for many genomes, including multi-GMAC ones, on meta.
    rng = random.Random(7)
    for _ in range(60):
        doc = g.random_genome(rng)
        for size in (40, 48):
            with torch.device("meta"):
                model = build_model(doc)
                out = model(torch.zeros(2, 1, size, size))
                out.sum().backward()
            assert out.shape == (2, 7)


@pytest.mark.parametrize("doc", _cheap_random_genomes(8), ids=lambda d: d["name"])
def test_random_genome_forward_backward_real(doc):
    model = build_model(doc).train()
    for size in (40, 48):
        x = torch.rand(2, 1, size, size)
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 6]))
        loss.backward()
        assert torch.isfinite(loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        model.zero_grad()


def test_macs_of_vgg():
    # 8 convs at 40,40,20,20,10,10,5,5 + 3 linear layers, by hand.
    conv = lambda i, o, s: i * o * 9 * s * s  # noqa: E731
    expected = (conv(1, 64, 40) + conv(64, 64, 40) + conv(64, 128, 20) + conv(128, 128, 20)
                + conv(128, 256, 10) + conv(256, 256, 10) + conv(256, 512, 5) + conv(512, 512, 5)
                + 2048 * 4096 + 4096 * 4096 + 4096 * 7)
    assert summarize(g.load_genome(f"{GENOMES}/vgg_khaireddin.json"))["macs"] == expected


def test_vanishing_feature_map_is_repaired_and_reported():
    doc = g.load_genome(f"{GENOMES}/vgg_khaireddin.json")
    doc["stages"].append(dict(doc["stages"][-1]))  # 5 pools: fine at 40 (-> 1x1)
    model = build_model(doc, input_size=8)  # 8 -> 4 -> 2 -> 1 -> (vanish) -> (vanish)
    assert len(model.repairs) == 2 and "would vanish" in model.repairs[0]
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 7)
    assert build_model(doc, input_size=8).repairs == model.repairs  # deterministic


def test_oversized_flatten_is_repaired():
    doc = g.load_genome(f"{GENOMES}/vgg_khaireddin.json")
    for st in doc["stages"]:
        st["pool"] = "none"
    s = summarize(doc)
    assert any("exceeds" in r for r in s["repairs"])
    assert s["params"] < 200_000_000


def test_inverted_residual_uses_residual_only_when_widths_match():
    from fernas.model import InvertedResidual
    assert InvertedResidual(32, 32, 3, 6).use_res
    assert not InvertedResidual(32, 64, 3, 6).use_res


def _hooked_macs(model, input_size):
    """Multiply-adds per image counted on the real modules (meta device): Conv2d and Linear calls."""
    total = [0]

    def hook(module, _inp, out):
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += out[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total[0] += module.in_features * module.out_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, input_size, input_size, device="meta"))
    for h in hooks:
        h.remove()
    return total[0]


def test_plan_costs_equal_the_built_modules():
    # The plan's parameter and multiply-add counts (which the search's --max-mmacs cap and the
    # layer table use) must be what the built network really has, repairs included.
    from fernas.model import estimate_macs, plan
    rng = random.Random(11)
    docs = [g.random_genome(rng) for _ in range(50)]
    docs += [g.load_genome(p) for p in sorted(__import__("glob").glob(f"{GENOMES}/*.json"))]
    for doc in docs:
        for size in (40, 48):
            with torch.device("meta"):
                model = build_model(doc, input_size=size)
            p = plan(doc, input_size=size)
            assert p.params == count_params(model) == summarize(doc, input_size=size)["params"], doc["name"]
            assert p.macs == _hooked_macs(model, size) == estimate_macs(doc, input_size=size), doc["name"]
