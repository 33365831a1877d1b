"""The search space file (`fernas space show`, `fernas evolve --space`) and patience, with the
GA's stand-in fitness of test_evolve (no Ray): the space holds through a whole search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fernas import genome as G
from fernas.cli import main
from fernas.evolve import Evolution, GAConfig
from fernas.space import GENES, LR, OPTIMIZER as OPT, Space, load_space, parse_space

from test_evolve import fake_outcome, seed_docs

RECIPE = {"optimizer": "nesterov", "lr": 0.01, "weight_decay": 0.0001, "scheduler": "plateau", "batch_size": 64}


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def search(space: Space, **cfg) -> tuple[Evolution, list[dict]]:
    """A whole search with the stand-in fitness; every genome it asked to train."""
    asked: list[dict] = []

    def evaluate(batch):
        asked.extend(c.doc for c in batch)
        return [fake_outcome(c) for c in batch]

    ev = Evolution(GAConfig(space=space.to_config(), max_mmacs=0, **cfg), seed_docs=seed_docs()).run(evaluate)
    return ev, asked


def test_show_prints_the_full_space_and_reads_back(tmp_path, capsys):
    assert main(["space", "show"]) == 0
    text = capsys.readouterr().out
    assert parse_space(yaml.safe_load(text), "shown") == Space.full()
    assert main(["space", "show", "--json"]) == 0
    assert load_space(write(tmp_path, capsys.readouterr().out, "s.json")) == Space.full()


@pytest.mark.parametrize("strategy, mutation", [("ga", "creep"), ("ga", "uniform"), ("random", "creep")])
def test_a_fixed_recipe_holds_through_a_whole_search(tmp_path, strategy, mutation):
    space = load_space(write(tmp_path, "train: " + json.dumps(RECIPE) + "\n"))
    ev, asked = search(space, pop=8, generations=5, seed=1, strategy=strategy, mutation=mutation, rerank_top=2)
    assert len(asked) > 20 and all(doc["train"] == RECIPE for doc in asked)
    # the VGG seed has this recipe: it starts the search; the others are left out
    vgg = G.genome_id(G.load_genome(Path(__file__).parents[1] / "genomes" / "vgg_khaireddin.json"))
    assert vgg in ev.cache and all(e["gid"] == vgg or e["generation"] > 0 or G.from_vector(e["vector"])["train"]
                                   == RECIPE for e in ev.cache.values())


def test_a_narrowed_width_range_holds_through_creep_and_crossover(tmp_path):
    space = load_space(write(tmp_path, "stages:\n  count: {max: 3}\n  all: {width: {min: 32, max: 96}}\n"
                                       "  0: {kernel: {fixed: 5}}\n"))
    _, asked = search(space, pop=8, generations=6, seed=2, mutation="creep", cxpb=0.9, indpb=0.3)
    assert len(asked) > 30
    for doc in asked:
        assert 1 <= len(doc["stages"]) <= 3 and doc["stages"][0]["kernel"] == 5
        assert all(32 <= st["width"] <= 96 for st in doc["stages"]), doc["stages"]


def in_range(doc: dict) -> bool:
    lo, hi = G.LR_RANGES[doc["train"]["optimizer"]]
    return lo <= doc["train"]["lr"] <= hi


def test_fresh_genomes_and_offspring_train_within_their_optimizers_learning_rates(capsys):
    import random
    from fernas.evolve.operators import make_toolbox

    rng = random.Random(0)
    docs = [G.from_vector(Space.full().random_vector(rng)) for _ in range(400)]
    assert all(in_range(d) for d in docs)
    assert {d["train"]["optimizer"] for d in docs} == set(G.OPTIMIZERS)
    assert {d["train"]["lr"] for d in docs if d["train"]["optimizer"] == "adadelta"} == {0.2, 0.5, 1.0}
    for seed in range(5):  # the command draws as the GA does
        assert main(["genome", "random", "--seed", str(seed)]) == 0
        assert in_range(json.loads(capsys.readouterr().out))
    # Two parents that differ in the learning-rate pair only: crossover alone (no mutation)
    # cuts between the genes in some children, and those get a rate inside the range, not
    # the other parent's (uniform: not piled on the range's edge).
    adam = G.to_vector(G.from_vector(Space.full().random_vector(rng)))
    sgd = list(adam)
    adam[OPT], adam[LR], sgd[OPT], sgd[LR] = G.OPTIMIZERS.index("adam"), 0, G.OPTIMIZERS.index("sgd"), 9
    tb = make_toolbox(GAConfig())
    random.seed(3)
    children = [c for _ in range(300) for c in tb.mate(list(adam), list(sgd))]
    assert all(in_range(G.from_vector(c)) for c in children)
    mixed = [G.LRS[c[LR]] for c in children if (c[OPT], c[LR]) not in {(adam[OPT], 0), (sgd[OPT], 9)}]
    assert len(mixed) > 10 and len(set(mixed)) >= 4
    mutated = [tb.mutate(list(adam))[0] for _ in range(300)]
    assert all(in_range(G.from_vector(c)) for c in mutated)


def test_a_partly_narrowed_rate_keeps_what_each_optimizer_can_use():
    import random
    from fernas.evolve.operators import make_toolbox

    space = parse_space({"train": {"lr": {"choices": [1e-4, 0.5]}}}, "test")
    tb = make_toolbox(GAConfig(space=space.to_config(), indpb=0.5))
    random.seed(1)
    start = Space.full().project(G.to_vector(G.from_vector(space.random_vector(random.Random(2)))), random)
    kids = [G.from_vector(tb.mutate(list(start))[0])["train"] for _ in range(300)]
    by_opt = {o: {k["lr"] for k in kids if k["optimizer"] == o} for o in G.OPTIMIZERS}
    assert by_opt["adam"] == {1e-4} and by_opt["adadelta"] == {0.5}
    assert by_opt["sgd"] <= {1e-4, 0.5} and by_opt["sgd"]  # neither is SGD's: the space's choice stands


def test_a_learning_rate_the_space_fixes_outside_the_range_is_kept(tmp_path):
    space = load_space(write(tmp_path, "train: {optimizer: {fixed: adadelta}, lr: {fixed: 0.0001}}\n"))
    _, asked = search(space, pop=6, generations=3, seed=4, indpb=0.5)
    assert len(asked) > 10 and {(d["train"]["optimizer"], d["train"]["lr"]) for d in asked} == {("adadelta", 1e-4)}


def test_the_full_space_decides_as_before(tmp_path):
    """No --space and a file that allows everything make the same search, draw for draw."""
    full = load_space(write(tmp_path, "fernas_space: 1\n"))
    a, _ = search(full, pop=8, generations=4, seed=5)
    b = Evolution(GAConfig(max_mmacs=0, pop=8, generations=4, seed=5), seed_docs=seed_docs()).run(
        lambda batch: [fake_outcome(c) for c in batch])
    assert list(a.cache) == list(b.cache) and list(a.logbook) == list(b.logbook)


@pytest.mark.parametrize("text, expect", [
    ("stages:\n  all: {widht: {min: 32}}\n", "stages.all.widht: unknown field; expected one of block"),
    ("train: {lr: {fixed: 0.003}}\n", "train.lr.fixed: 0.003 is not a value of this gene; expected one of 0.0001"),
    ("stages: {all: {width: {min: 256, max: 64}}}\n", "stages.all.width: min 256 is above max 64"),
    ("train: {optimizer: {min: sgd}}\n", "train.optimizer: min/max need an ordered gene"),
    ("head: {fc: {7: {width: 64}}}\n", "head.fc.7: unknown field"),
    ("train: {lr: {fixed: 0.01, choices: [0.1]}}\n", "train.lr: expected one of fixed"),
    ("train: [1\n", "not valid YAML"),
    ("fernas_space: 9\n", "fernas_space 9: this fernas reads version 1"),
    ("foo: 1\n", "foo: unknown field; expected one of fernas_space"),  # after the file's name, not joined by '.'
    ("", "empty; expected a space file"), ("# only a comment\n", "empty; expected a space file"),
    ("train:\n  lr: {fixed: 0.001}\ntrain:\n  optimizer: {fixed: adam}\n",  # the first would be dropped
     "not valid YAML (the key 'train' appears twice in one mapping)"),
    ("stages: {all: {width: {min: 32}, width: {max: 64}}}\n", "the key 'width' appears twice"),
])
def test_bad_space_files_one_line_exit_2(tmp_path, capsys, text, expect):
    path = write(tmp_path, text)
    assert main(["space", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fernas: error: {path}: ") and expect in err and len(err.splitlines()) == 1


def test_a_space_file_that_is_not_utf8_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\xff\xfe")  # a UTF-16 byte order mark: not the UTF-8 fernas reads
    assert main(["space", "show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fernas: error: {path}: not UTF-8 text (byte 0xff at offset 0); "
                   "expected a YAML or JSON space file in UTF-8")
    assert main(["evolve", "--space", str(path), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == err and not (tmp_path / "run").exists()


def test_space_show_out_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "x.yaml"
    assert main(["space", "show", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"fernas: error: {tmp_path / 'afile'}: not a directory (in --out {out})"


def test_a_space_with_no_genome_under_the_cap_is_refused(tmp_path, capsys):
    path = write(tmp_path, "stages: {count: {min: 5}, all: {block: {fixed: conv}, width: {min: 512}, "
                           "repeats: {min: 3}, pool: {fixed: none}}}\n")
    out = tmp_path / "run"
    assert main(["evolve", "--space", str(path), "--max-mmacs", "60", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no genome of this space found under --max-mmacs 60" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_space_whose_batch_sizes_leave_out_the_trial_batch_is_refused(tmp_path, capsys):
    path = write(tmp_path, "train: {batch_size: {fixed: 64}}\n")
    out = tmp_path / "run"
    assert main(["evolve", "--space", str(path), "--out", str(out)]) == 2  # trials at batch 32
    err = capsys.readouterr().err.strip()
    assert f"{path}: its batch sizes (64) leave out --trial-batch 32" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_resume_takes_its_space_file_with_or_without_the_batch_the_run_fixed(tmp_path):
    from fernas.search.run import _same_space
    from fernas.search.warm_start import _batch_sizes
    from fernas.space import Space, with_batch

    raw = load_space(write(tmp_path, "stages: {count: {max: 2}}\n")).to_config()
    fixed = with_batch(Space.from_config(raw), 32, "").to_config()  # what a run with --trial-batch 32 stores
    assert fixed["train.batch_size"] == [0] and raw.get("train.batch_size") is None
    assert _same_space(raw, fixed, 32) and _same_space(raw, raw, 32)  # a run stored before the batch was fixed
    assert not _same_space(raw, fixed, 64) and not _same_space({"stages.count": [1]}, fixed, 32)
    # a warm start says which batch sizes each run's genomes may have
    assert _batch_sizes(fixed) == "32" and _batch_sizes(raw) == "searched" and _batch_sizes(None) == "searched"


def test_patience_ends_evolution_and_a_larger_one_reopens_it(tmp_path):
    flat = lambda batch: [{**fake_outcome(c), "status": "ok", "val_acc": 0.3} for c in batch]  # noqa: E731
    ev = Evolution(GAConfig(pop=6, generations=10, patience=2, rerank_top=1, rerank_seeds=1, max_mmacs=0),
                   seed_docs=seed_docs(), checkpoint_path=tmp_path / "checkpoint.json").run(flat)
    assert ev.done and ev.meta["ended_by"] == "patience" and ev.gen == 3  # generations 0, 1, 2: no better best
    ev = Evolution.load(tmp_path / "checkpoint.json")
    ev.cfg.patience = 2
    assert not ev.reopen()  # the same patience: still ended
    ev.cfg.patience = 4
    assert ev.reopen()
    before = set(ev.cache)
    trained: list[str] = []
    ev.run(lambda batch: (trained.extend(c.gid for c in batch if c.kind == "first"), flat(batch))[1])
    assert ev.done and ev.gen == 5 and not set(trained) & before  # two more generations, nothing trained twice


def test_space_config_round_trip():
    narrowed = {GENES[0].field: [1, 2], "train.lr": [6]}
    assert Space.from_config(narrowed).to_config() == narrowed
    assert Space.from_config(None) == Space.full() and Space.full().to_config() is None


def test_max_cost_counts_activation_memory():
    doc = G.load_genome(Path(__file__).parents[1] / "genomes" / "daocong_mobilenetv2.json")  # 34 MMAC, ~98 cost
    assert GAConfig(max_cost=100).refusal(doc) is None
    assert "too costly: about 98M multiply-add equivalents" in GAConfig(max_cost=90).refusal(doc)
    ev, asked = search(Space.full(), pop=6, generations=3, seed=4, max_cost=60)
    from fernas.model import estimate_cost
    assert asked and all(estimate_cost(d) <= 60e6 for d in asked)


def test_a_reopened_run_still_sees_better_genomes(tmp_path):
    """Re-ranked genomes head the hall of fame, but progress, patience and the next re-ranking
    go by fitness: genomes found after the reopening can become the best."""
    ev = Evolution(GAConfig(pop=6, generations=12, patience=1, rerank_top=1, rerank_seeds=1, max_mmacs=0, seed=3),
                   seed_docs=seed_docs(), checkpoint_path=tmp_path / "checkpoint.json").run(
        lambda batch: [fake_outcome(c) for c in batch])
    assert ev.meta["ended_by"] == "patience"
    ev = Evolution.load(tmp_path / "checkpoint.json")
    ev.cfg.patience = 12
    assert ev.reopen()
    ev.run(lambda batch: [fake_outcome(c) for c in batch])
    top = ev.by_fitness()[0]
    assert ev.logbook[-1]["best"] == ev.cache[top.gid]["val_acc"]
    assert any(t["kind"] == "rerank" for t in ev.cache[top.gid]["trials"])  # the new best was re-ranked too


def test_the_at_chance_hint_suggests_only_a_trial_batch_the_space_allows():
    from types import SimpleNamespace

    from fernas.search.start_notes import recipe_hint
    from fernas.space import Space, parse_space

    def opts(space):
        return SimpleNamespace(trial_batch=0, trial_augment="vgg", ga=SimpleNamespace(space=space.to_config()))

    assert recipe_hint(opts(Space.full())) == "--trial-batch 32 --trial-augment none"
    at_64 = parse_space({"train": {"batch_size": {"fixed": 64}}}, "vgg-recipe.yaml")
    assert recipe_hint(opts(at_64)) == "--trial-augment none"  # --trial-batch 32 would be refused with it
