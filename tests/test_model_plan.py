"""The build plan: layer shapes and costs match the built modules; planning builds nothing."""

import glob
import random

import pytest
import torch

from fernas import genome as g
from fernas.model import BLOCKS, build_model, count_params, estimate_macs, plan, summarize
from conftest import GENOMES


def _docs(n=30, seed=5):
    rng = random.Random(seed)
    return [g.random_genome(rng) for _ in range(n)] + [g.load_genome(p) for p in sorted(glob.glob(f"{GENOMES}/*.json"))]


def test_every_block_gene_has_a_spec():
    assert set(BLOCKS) == set(g.BLOCKS)


@pytest.mark.parametrize("size", [40, 48, 8])
def test_plan_layers_match_the_built_modules(size):
    # Each planned layer is one child module: same name, class, output shape and parameters.
    for doc in _docs():
        p = plan(doc, input_size=size)
        with torch.device("meta"):
            model = build_model(doc, input_size=size).eval()  # BN on a 1x1 map needs eval mode
        children = list(model.features.named_children()) + [("reduce", model.reduce)] + list(
            model.classifier.named_children())
        assert [name for name, _ in children] == [layer.name for layer in p.layers]
        shapes = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
                 for _, m in children]
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size, device="meta"))
        for h in hooks:
            h.remove()
        assert shapes == [layer.shape for layer in p.layers], doc["name"]
        for (_, module), layer in zip(children, p.layers):
            assert type(module).__name__ == layer.kind
            assert count_params(module) == layer.params, (doc["name"], layer.name)
        assert (p.repairs, p.feature_size) == (model.repairs, model.feature_size)


def test_vgg_plan_by_hand():
    p = plan(g.load_genome(f"{GENOMES}/vgg_khaireddin.json"))
    blocks = [layer for layer in p.features if layer.kind == "ConvBNReLU"]
    assert [layer.shape for layer in blocks[::2]] == [(64, 40, 40), (128, 20, 20), (256, 10, 10), (512, 5, 5)]
    assert p.feature_size == 2 and p.reduce.shape == (512 * 2 * 2,)
    assert p.layers[-1].name == "classifier" and p.layers[-1].shape == (7,)
    assert p.params == 29_890_759 and not p.repairs


def test_planning_builds_no_module(monkeypatch):
    # The search plans thousands of draws: planning, estimating and summarising stay pure Python.
    def refuse(*_a, **_k):
        raise AssertionError("a module was built")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    for doc in _docs(10):
        assert plan(doc).macs == estimate_macs(doc) == summarize(doc)["macs"] > 0


@pytest.mark.parametrize("seed", range(6))
def test_plan_activations_match_a_forward_pass(seed):
    """`Plan.activations` counts what the built network's forward pass writes per image: every
    leaf module's output, plus the residual sums (no module), minus Flatten (a view)."""
    from fernas.model import InvertedResidual

    doc = g.random_genome(random.Random(seed)) if seed else g.load_genome(f"{GENOMES}/daocong_mobilenetv2.json")
    model = build_model(doc).eval()
    written = []

    def count(module, inputs, output):
        if isinstance(module, InvertedResidual) and module.use_res:
            written.append(output[0].numel())  # x + conv(x)
        elif not list(module.children()) and not isinstance(module, torch.nn.Flatten):
            written.append(output[0].numel())

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 40, 40))
    for h in hooks:
        h.remove()
    assert plan(doc).activations == sum(written)


def test_a_genome_too_large_for_a_trials_host_memory_is_refused_with_the_figures():
    from fernas.genome import load_genome
    from fernas.model import plan, training_memory_bytes
    from fernas.search.run import memory_refusal

    vgg, mobile = plan(load_genome("genomes/vgg_khaireddin.json")), plan(load_genome("genomes/daocong_mobilenetv2.json"))
    assert training_memory_bytes(vgg, 1024) > training_memory_bytes(vgg, 512) >= training_memory_bytes(vgg, 32) > 0
    gib = 2**30
    assert memory_refusal(mobile, 64, 4 * gib) is None
    why = memory_refusal(vgg, 256, 0.25 * gib)
    assert why.startswith("too large for host memory: training needs about") and "a trial has about 0.2 GiB" in why


def test_a_reranking_at_the_genomes_own_batch_is_checked_against_host_memory(tmp_path):
    """The trial recipe's batch 32 fits, the genome's own 256 does not: its own-recipe re-ranking
    is refused (recorded as skipped, with the figures), its trial-recipe one is not."""
    from types import SimpleNamespace

    from fernas.evolve import Evolution, GAConfig
    from fernas.evolve.config import Candidate
    from fernas.genome import load_genome
    from fernas.model import plan, training_memory_bytes
    from fernas.search.options import EvolveOptions
    from fernas.search.run import EvolveRun

    doc = load_genome("genomes/daocong_mobilenetv2.json")
    doc["train"]["batch_size"] = 256
    p = plan(doc)
    allowance = (training_memory_bytes(p, 32) + training_memory_bytes(p, 256)) / 2
    for recipe, refused in (("own", True), ("trial", False)):
        ga = GAConfig(max_budget=4, rerank_recipe=recipe)
        run = EvolveRun(EvolveOptions(out=str(tmp_path), ga=ga, trial_batch=32), Evolution(ga),
                        SimpleNamespace(out=tmp_path), n_train=1400, console=None)
        run.trial_memory = allowance
        recorded = []
        run.record = lambda cand, outcome: recorded.append((cand.kind, outcome))
        assert not run.refuse(Candidate("g", [0], doc, 0, budget=4, kind="first"))  # batch 32 fits
        assert run.refuse(Candidate("g", [0], doc, 0, budget=4, kind="rerank", seed=1)) is refused
        assert [k for k, _ in recorded] == (["rerank"] if refused else [])
        if refused:
            assert recorded[0][1]["status"] == "skipped" and "too large for host memory" in recorded[0][1]["error"]
