"""The DEAP loop of fernas.evolve with a stand-in fitness (no Ray, no training): fast."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from fernas import genome as G
from fernas.errors import RunDirError
from fernas.evolve import CHECKPOINT_VERSION, Evolution, GAConfig, is_done, read_outcomes
from fernas.evolve.fidelity import trial_at
from fernas.fitness import fitness_of
from fernas.model import estimate_macs
from fernas.objectives import OBJECTIVES, parse_objectives

ROOT = Path(__file__).resolve().parents[1]


def fake_outcome(cand) -> dict:
    """Deterministic stand-in for a trial: accuracy from the vector, some genomes 'fail'."""
    s = sum(v * (i + 1) for i, v in enumerate(cand.vector))
    if s % 11 == 0:
        return {"status": "failed", "error": "TrainingDiverged: loss became nan", "val_acc": None}
    noise = 0.04 * ((s + 7 * cand.seed) % 3 - 1) if cand.seed else 0.0  # another seed, another result
    return {"status": "ok", "val_acc": (s % 101) / 125.0 + 0.05 * cand.level + noise, "params": 1000 + s * 37 % 5000,
            "macs": s, "latency_ms": 1.0 + (s % 7), "compute": s * cand.budget}


def seed_docs() -> list[dict]:
    return [G.load_genome(p) for p in sorted(glob.glob(str(ROOT / "genomes" / "*.json")))]


def run_full(tmp_path: Path | None, **cfg) -> tuple[Evolution, list[str]]:
    trained: list[str] = []

    def evaluate(batch):
        trained.extend(c.gid for c in batch if c.kind == "first")  # genomes; promotions continue them
        return [fake_outcome(c) for c in batch]

    ckpt = None if tmp_path is None else tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(**cfg), seed_docs=seed_docs(), checkpoint_path=ckpt).run(evaluate)
    return ev, trained


def snapshot(ev: Evolution) -> dict:
    return {"pop": [list(i) for i in ev.population], "log": list(ev.logbook),
            "hof": [i.gid for i in ev.hall_of_fame()], "cache": list(ev.cache),
            "origins": {gid: e.get("origin") for gid, e in ev.cache.items()}}


@pytest.mark.parametrize("objectives", [("accuracy",), ("accuracy", "params")])
def test_same_seed_same_decisions(objectives):
    a, _ = run_full(None, pop=8, generations=5, seed=3, objectives=objectives)
    b, _ = run_full(None, pop=8, generations=5, seed=3, objectives=objectives)
    c, _ = run_full(None, pop=8, generations=5, seed=4, objectives=objectives)
    assert snapshot(a) == snapshot(b)
    assert snapshot(a)["pop"] != snapshot(c)["pop"]


def test_each_genome_trained_once_and_cache_hits_counted():
    # the textbook loop (no novel offspring): copies and re-met genomes are cache hits
    ev, trained = run_full(None, pop=10, generations=8, seed=0, cxpb=0.9, mutpb=0.2, novel_offspring=False,
                           mutation="uniform")
    assert len(trained) == len(set(trained)) == len(ev.cache)
    assert sum(r["evals"] for r in ev.logbook) == len(trained)
    assert sum(r["cache_hits"] for r in ev.logbook) > 0  # crossover of inactive genes, elites re-met
    assert len(ev.logbook) == 8


def test_offspring_stay_valid_and_population_size_is_kept():
    ev, _ = run_full(None, pop=9, generations=6, seed=5, mutpb=0.9, indpb=0.5)
    for gid, entry in ev.cache.items():
        assert G.genome_id(G.from_vector(entry["vector"])) == gid
    assert len(ev.population) == 9
    for ind in ev.population:
        assert all(lo <= v <= hi for v, (lo, hi) in zip(ind, G.GENE_BOUNDS))
        G.validate(G.from_vector(list(ind)))


def test_initial_population_has_seeds_and_no_duplicates():
    seeds = seed_docs()
    ev = Evolution(GAConfig(pop=12, generations=1, seed=0), seed_docs=seeds)
    batch = ev.next_batch()
    ids = [c.gid for c in batch]
    assert len(ids) == len(set(ids)) == 12
    for doc in seeds[:12]:
        assert G.genome_id(doc) in ids


def test_failed_trial_gets_penalty_and_run_goes_on():
    ev, trained = run_full(None, pop=10, generations=4, seed=2)
    failed = [e for e in ev.cache.values() if e["status"] == "failed"]
    assert failed, "the stand-in fitness should fail some genomes"
    assert fitness_of(failed[0], ("accuracy", "params")) == (OBJECTIVES["accuracy"].penalty, OBJECTIVES["params"].penalty)
    assert sum(r["failures"] for r in ev.logbook) == len(failed)
    assert sum(r["skipped"] for r in ev.logbook) == 0
    assert ev.done and ev.best().fitness.values[0] > 0
    # generation statistics are over trained genomes: a penalty is no accuracy of 0
    gen0 = Evolution(GAConfig(pop=10, generations=1, seed=2), seed_docs=seed_docs()).run(
        lambda b: [fake_outcome(c) for c in b])
    (rec,) = gen0.logbook
    ok = [e["val_acc"] for e in gen0.cache.values() if e["status"] == "ok"]
    assert rec["penalised"] == 10 - len(ok) > 0
    assert rec["mean"] == pytest.approx(sum(ok) / len(ok)) and rec["min"] == min(ok)


def test_pareto_front_is_nondominated():
    ev, _ = run_full(None, pop=8, generations=4, seed=1, objectives=("accuracy", "params"))
    front = ev.hall_of_fame()
    assert front
    for a in front:
        for b in front:
            assert not (a.fitness.dominates(b.fitness))


@pytest.mark.parametrize("strategy", ["ga", "random", "nsga2"])
@pytest.mark.parametrize("kill_after", [3, 11, 17])
def test_killed_run_resumes_with_same_decisions_and_no_retraining(tmp_path, kill_after, strategy):
    """A kill between two trials (at any trial) loses nothing and changes no decision."""
    cfg = dict(pop=8, generations=5, seed=7, strategy=strategy)
    if strategy == "nsga2":  # the GA with two objectives (novel offspring under NSGA-II)
        cfg.update(strategy="ga", objectives=("accuracy", "params"))
    ref, _ = run_full(None, **cfg)

    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(**cfg), seed_docs=seed_docs(), checkpoint_path=ckpt)
    trained: list[str] = []
    batch = ev.next_batch()
    try:
        while batch is not None:
            for cand in batch:
                if len(trained) == kill_after:
                    raise KeyboardInterrupt  # stands in for SIGKILL: only the files survive
                trained.append((cand.gid, cand.budget, cand.seed))
                ev.record(cand, fake_outcome(cand))
            batch = ev.next_batch()
    except KeyboardInterrupt:
        pass
    del ev

    resumed = Evolution.load(ckpt, seed_docs=seed_docs())
    more: list[str] = []
    resumed.run(lambda b: (more.extend((c.gid, c.budget, c.seed) for c in b), [fake_outcome(c) for c in b])[1])
    assert not set(trained) & set(more), "a completed trial was trained again"
    assert snapshot(resumed) == snapshot(ref)
    # and the checkpoint on disk says the run is complete
    assert json.loads(ckpt.read_text())["done"] is True


def drive_to_a_budget(ev: Evolution, end_after: int, kill_after: int | None = None) -> list[tuple]:
    """Drive `ev` as the Tune searcher does when a budget is spent after `end_after` trials, in
    mid-batch: the next two candidates were running (they finish and are recorded), the rest of
    the batch never starts; then the re-ranking.  `kill_after`: trials after the end, then a kill."""
    done: list[tuple] = []
    ended_at = None
    batch = ev.next_batch()
    while batch is not None:
        todo = list(batch)
        while todo:
            if len(done) == end_after and ended_at is None:
                ev.end_search(("max_compute", "1e9 images x multiply-adds spent", 1e9), todo[:2])
                ended_at, todo = len(done), todo[:2]
            if kill_after is not None and ended_at is not None and len(done) - ended_at == kill_after:
                raise KeyboardInterrupt  # stands in for SIGKILL: only the files survive
            cand = todo.pop(0)
            done.append((cand.gid, cand.budget, cand.kind, cand.seed))
            ev.record(cand, fake_outcome(cand))
        batch = ev.next_batch()
    return done


@pytest.mark.parametrize("kill_after", [None, 0, 1, 2, 3])
def test_a_budget_ends_the_search_then_its_best_are_re_ranked_and_a_kill_changes_nothing(tmp_path, kill_after):
    cfg = GAConfig(pop=8, generations=5, seed=2, min_budget=1, max_budget=2, rerank_top=2, rerank_seeds=1)
    ref = Evolution(cfg, seed_docs=seed_docs(), checkpoint_path=tmp_path / "ref.json")
    ref_trials = drive_to_a_budget(ref, end_after=13)
    assert ref.done and ref.meta["ended_by"] == "max_compute" and ref.gen < cfg.generations
    reranked = [t for t in ref_trials if t[2] == "rerank"]
    assert len(reranked) == 2 and ref_trials[-2:] == reranked  # the re-ranking follows the end
    # the genomes the unfinished generation trained (in flight at the end too) are in the hall of fame
    partial = {gid for gid, e in ref.cache.items() if e["generation"] == ref.gen}
    assert partial & {i.gid for i in ref.hall_of_fame()}
    assert [i.gid for i in ref.hall_of_fame()] == [i.gid for i in ref.hall_of_fame_so_far()]
    assert {t[0] for t in reranked} == {i.gid for i in ref.by_fitness()[:2]}
    if kill_after is None:
        return
    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(cfg, seed_docs=seed_docs(), checkpoint_path=ckpt)
    with pytest.raises(KeyboardInterrupt):
        drive_to_a_budget(ev, end_after=13, kill_after=kill_after)
    before = [(gid, t["budget"], t["kind"], t["seed"]) for gid, e in ev.cache.items() for t in e["trials"]]
    resumed = Evolution.load(ckpt, seed_docs=seed_docs())
    assert resumed.ended_by_budget and not resumed.done
    more: list[tuple] = []
    resumed.run(lambda b: (more.extend((c.gid, c.budget, c.kind, c.seed) for c in b), [fake_outcome(c) for c in b])[1])
    assert not set(before) & set(more) and sorted(before + more) == sorted(ref_trials)
    assert snapshot(resumed) == snapshot(ref) and resumed.done


def test_a_budget_that_ends_generation_0_of_a_warm_start_ranks_the_genomes_it_brought():
    cfg = GAConfig(pop=6, generations=3, seed=1, min_budget=1, max_budget=2, rerank_top=2, rerank_seeds=1)
    earlier = Evolution(cfg, seed_docs=seed_docs())
    earlier.run(lambda b: [fake_outcome(c) for c in b])
    # the earlier run's hall of fame at the head of generation 0, its outcomes in the cache
    warm = [ind for ind in earlier.hall_of_fame()[:2]]
    docs = [{**G.from_vector(list(ind)), "name": f"warm{i}"} for i, ind in enumerate(warm)]
    ev = Evolution(cfg, seed_docs=docs + seed_docs())
    ev.cache.update({ind.gid: {**earlier.cache[ind.gid], "generation": -1} for ind in warm})
    batch = ev.next_batch()
    assert not {c.gid for c in batch} & {ind.gid for ind in warm}  # cache hits: not trained again
    ev.end_search(("max_trials", "0 reached", 0), [])  # before any trial of generation 0
    assert ev.next_batch() is None and ev.done  # re-ranked in the earlier run already: nothing to train
    assert [i.gid for i in ev.hall_of_fame()] == [ind.gid for ind in warm]


def test_trials_running_when_a_budget_was_spent_are_known_to_a_resume_until_the_search_ends():
    """`note_spent` (a budget spent while the rung's last trials run): a resume takes the budget
    as spent, unless raised, and lets the trials a kill lost run; a later note keeps those noted
    earlier until they are recorded (a promotion running beside them is not forgotten)."""
    from fernas.evolve import Candidate

    ev = Evolution(GAConfig(pop=4, generations=2, seed=0))
    spent = ("max_trials", "7 reached", 7)
    d, p = Candidate("d", [0], {}, 0, budget=1), Candidate("p", [1], {}, 0, budget=2, kind="promotion")
    ev.note_spent(spent, [d, p])
    assert ev.ran_when_spent(d) and ev.ran_when_spent(p) and not ev.ran_when_spent(replace(d, budget=2))
    ev.record(d, {"status": "ok", "val_acc": 0.3})
    ev.note_spent(spent, [])  # d's outcome: recorded, no longer in flight; p still is
    assert not ev.ran_when_spent(d) and ev.ran_when_spent(p)
    assert ev.spent_budget({"max_trials": 7}) == spent and "spent_with" in ev.meta
    ev.gen = 1  # the generation closed: what ran in generation 0 is no longer in flight
    assert not ev.ran_when_spent(p)
    ev.gen = 0
    assert ev.spent_budget({"max_trials": 9}) is None and "spent_with" not in ev.meta  # raised: dropped
    ev.note_spent(spent, [p])
    ev.end_search(spent, [])
    assert not ev.ran_when_spent(p) and "spent_with" not in ev.meta


def test_a_search_a_budget_ended_goes_on_when_reopened_and_decides_as_if_never_ended(tmp_path):
    cfg = dict(pop=8, generations=4, seed=3, min_budget=1, max_budget=2, rerank_top=1, rerank_seeds=1)
    ref, _ = run_full(None, **cfg)
    ckpt = tmp_path / "checkpoint.json"
    first = drive_to_a_budget(Evolution(GAConfig(**cfg), seed_docs=seed_docs(), checkpoint_path=ckpt), 9)
    ev = Evolution.load(ckpt, seed_docs=seed_docs())
    assert ev.done and ev.ended_by_budget
    # only the budget that ended it, raised, reopens the search (another budget does not)
    assert not ev.budget_raised({"max_compute": 1e9, "max_trials": 500}) and ev.budget_raised({"max_compute": 2e9})
    assert ev.budget_raised({"max_compute": None})  # none any more
    ev.reopen_search()
    assert not ev.done and not ev.ended_by_budget and not ev.search_over
    more: list[tuple] = []
    ev.run(lambda b: (more.extend((c.gid, c.budget, c.kind, c.seed) for c in b), [fake_outcome(c) for c in b])[1])
    assert not set(first) & set(more), "a completed trial was trained again"
    assert ev.done and ev.meta["ended_by"] == "generations"
    assert [list(i) for i in ev.population] == [list(i) for i in ref.population] and list(ev.logbook) == list(ref.logbook)
    search = lambda e: [t for t in e.cache.values() for t in t["trials"] if t["kind"] != "rerank"]  # noqa: E731
    assert len(search(ev)) == len(search(ref))


def test_random_strategy_same_generation_0_then_fresh_samples():
    """--strategy random: the GA's generation 0, then `pop` never-seen genomes per generation."""
    ga, _ = run_full(None, pop=8, generations=4, seed=3)
    rnd, trained = run_full(None, pop=8, generations=4, seed=3, strategy="random")
    gen0 = lambda ev: {g: e["val_acc"] for g, e in ev.cache.items() if e["generation"] == 0}  # noqa: E731
    assert gen0(rnd) == gen0(ga) and len(gen0(rnd)) == 8
    assert len(trained) == len(set(trained)) == len(rnd.cache) == 8 * 4  # every proposal is new
    assert [r["evals"] for r in rnd.logbook] == [8, 8, 8, 8]
    assert all(r["cache_hits"] == 0 for r in rnd.logbook)
    seeds = {G.genome_id(d) for d in seed_docs()}
    later = [g for g, e in rnd.cache.items() if e["generation"] > 0]
    assert not seeds & set(later)
    # the same outputs as the GA: hall of fame, best, logbook
    assert rnd.best().fitness.values[0] == max(fitness_of(e, ("accuracy",))[0] for e in rnd.cache.values())
    assert len(rnd.hall_of_fame()) == 10 and len(rnd.population) == 8
    # the same seed draws the same random search; another seed another one
    again, _ = run_full(None, pop=8, generations=4, seed=3, strategy="random")
    assert snapshot(again) == snapshot(rnd)
    assert snapshot(run_full(None, pop=8, generations=4, seed=4, strategy="random")[0])["cache"] != snapshot(rnd)["cache"]
    with pytest.raises(ValueError, match="strategy"):
        GAConfig(strategy="annealing")


def test_resume_of_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirError, match="no GA checkpoint"):
        Evolution.load(tmp_path / "checkpoint.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"fernas_evolve_checkpoint": 1, "config": {')
    with pytest.raises(RunDirError, match="corrupt"):
        Evolution.load(bad)


def test_objectives_parse():
    assert parse_objectives("accuracy,params") == ("accuracy", "params")
    for bad in ("speed", "params", "accuracy,params,latency", ""):
        with pytest.raises(ValueError):
            parse_objectives(bad)


@pytest.mark.parametrize("strategy", ["ga", "random"])
def test_fresh_samples_respect_the_cost_cap(strategy):
    """With max_mmacs, generation 0 and random search draw only genomes the driver will train."""
    ev, _ = run_full(None, pop=8, generations=3, seed=1, max_mmacs=40, strategy=strategy)
    drawn = [e for e in ev.cache.values() if e["generation"] == 0 or strategy == "random"]
    assert len(drawn) == (8 if strategy == "ga" else 24)
    assert all(estimate_macs(G.from_vector(e["vector"])) <= 40e6 for e in drawn)
    big = {G.genome_id(d) for d in seed_docs() if estimate_macs(d) > 40e6}
    assert big and not big & set(ev.cache)  # seed designs above the cap are left out


def test_creep_mutation_keeps_vectors_valid_and_is_deterministic():
    a, _ = run_full(None, pop=9, generations=5, seed=5, mutpb=0.9, indpb=0.5, mutation="creep")
    b, _ = run_full(None, pop=9, generations=5, seed=5, mutpb=0.9, indpb=0.5, mutation="creep")
    assert snapshot(a) == snapshot(b)
    for ind in a.population:
        assert all(lo <= v <= hi for v, (lo, hi) in zip(ind, G.GENE_BOUNDS))
        G.validate(G.from_vector(list(ind)))
    with pytest.raises(ValueError, match="mutation"):
        GAConfig(mutation="gaussian")


def test_novel_offspring_trains_pop_minus_elite_new_genomes_each_generation(tmp_path):
    ev, trained = run_full(None, pop=8, generations=5, seed=2, elite=2, novel_offspring=True, mutation="creep")
    assert len(trained) == len(set(trained))
    assert [r["evals"] for r in ev.logbook][1:] == [6, 6, 6, 6]  # every child is a new genome
    assert all(r["cache_hits"] == 0 for r in ev.logbook[1:])
    # and resume replays the same decisions
    ckpt = tmp_path / "checkpoint.json"
    part = Evolution(GAConfig(pop=8, generations=5, seed=2, elite=2, novel_offspring=True, mutation="creep"),
                     seed_docs=seed_docs(), checkpoint_path=ckpt)
    batch, n = part.next_batch(), 0
    while batch is not None and n < 19:
        for cand in batch[:19 - n]:
            part.record(cand, fake_outcome(cand))
            n += 1
        batch = part.next_batch() if n < 19 else None
    resumed = Evolution.load(ckpt, seed_docs=seed_docs()).run(lambda b: [fake_outcome(c) for c in b])
    assert snapshot(resumed) == snapshot(ev)


@pytest.mark.parametrize("objectives", [("accuracy",), ("accuracy", "params")])
def test_immigrants_fill_their_share_of_each_generation_with_fresh_draws(objectives):
    fresh = {"uniform"}  # immigrants are uniform draws (generation 0 samples the seeds' spaces too)

    def origins(ev, gen):
        return sorted(e["origin"] for e in ev.cache.values() if e["generation"] == gen)

    slots = 6 if len(objectives) == 1 else 8  # pop - elite; NSGA-II breeds pop children
    for share, n_fresh in ((0.5, slots // 2), (0.0, 0), (1.0, slots)):
        ev, trained = run_full(None, pop=8, generations=4, seed=7, elite=2, immigrants=share, max_mmacs=60,
                               objectives=objectives)
        assert len(trained) == len(set(trained))
        assert {"seed"} <= set(origins(ev, 0)) <= {"seed", "space-001", "space-004", "uniform"}
        for gen in (1, 2, 3):
            got = origins(ev, gen)
            assert len(got) == slots and sum(o in fresh for o in got) == n_fresh, (share, gen, got)
            assert got.count("child") == slots - n_fresh
    assert [GAConfig(immigrants=0.5).n_immigrants(s) for s in (3, 4, 5)] == [2, 2, 3]
    with pytest.raises(ValueError, match="immigrants"):
        GAConfig(immigrants=1.5)


def test_a_space_too_small_for_the_immigrants_keeps_the_population_size():
    from fernas.space import GENES

    vec = G.to_vector(seed_docs()[0])
    space = {g.field: [v] for g, v in zip(GENES, vec)}  # one genome at every learning rate: a handful
    space["train.lr"] = list(range(len(G.LRS)))
    ev, trained = run_full(None, pop=6, generations=3, seed=1, elite=1, immigrants=1.0, space=space, max_mmacs=0)
    assert len(trained) == len(set(trained)) < 11  # all that the space holds, each once
    assert len(ev.population) == 6 and len(ev.logbook) == 3


def test_novel_offspring_stay_under_the_cost_cap():
    ev, _ = run_full(None, pop=8, generations=5, seed=4, max_mmacs=30, novel_offspring=True, mutation="creep")
    assert all(estimate_macs(G.from_vector(e["vector"])) <= 30e6 for e in ev.cache.values())
    assert [r["evals"] for r in ev.logbook][1:] == [6, 6, 6, 6]


def test_novel_offspring_is_the_default_and_works_with_nsga2():
    assert GAConfig().novel_offspring and GAConfig().mutation == "creep"
    ev, trained = run_full(None, pop=8, generations=4, seed=6, objectives=("accuracy", "params"))
    assert len(trained) == len(set(trained))
    assert [r["evals"] for r in ev.logbook][1:] == [8, 8, 8]  # NSGA-II: every one of pop children is new


def test_a_generation_with_nothing_trained_has_no_statistics_and_strict_json():
    ckpt_dir_outcome = {"status": "failed", "error": "TrainingDiverged: loss became nan", "val_acc": None}
    ev = Evolution(GAConfig(pop=6, generations=2, seed=1), seed_docs=[]).run(
        lambda b: [dict(ckpt_dir_outcome) for _ in b])
    rec = ev.logbook[0]
    assert rec["penalised"] == 6 and rec["mean"] is None and rec["min"] is None and rec["best"] is None
    json.loads(json.dumps(ev.state_dict()), parse_constant=lambda c: pytest.fail(f"{c} in the checkpoint"))


def test_checkpoint_reader_api_and_other_versions_refused(tmp_path):
    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(pop=6, generations=2, seed=1), seed_docs=seed_docs(), checkpoint_path=ckpt)
    ev.run(lambda b: [fake_outcome(c) for c in b])
    outcomes = read_outcomes(ckpt)
    assert list(outcomes) == list(ev.cache) and is_done(ckpt)
    assert all({"status", "generation", "vector", "gid"} <= set(e) for e in outcomes.values())
    old = json.loads(ckpt.read_text())
    old["fernas_evolve_checkpoint"] = 2
    ckpt.write_text(json.dumps(old))
    with pytest.raises(RunDirError, match=rf"checkpoint.json: GA checkpoint version 2, "
                                          rf"this fernas reads version {CHECKPOINT_VERSION}"):
        Evolution.load(ckpt)


def test_objective_registry_drives_the_deap_weights_and_penalties():
    for names in (("accuracy",), *(("accuracy", o) for o in OBJECTIVES if o != "accuracy")):
        ev = Evolution(GAConfig(pop=4, generations=1, objectives=names))
        assert ev.Ind().fitness.weights == tuple(OBJECTIVES[n].weight for n in names)
        failed = fitness_of({"status": "failed"}, names)
        assert failed == tuple(OBJECTIVES[n].penalty for n in names)


def test_successive_halving_promotes_the_best_of_each_rung_and_ranks_by_budget_first():
    batches = []

    def evaluate(batch):
        batches.append([(c.gid, c.budget, c.level, c.resume_from, c.kind) for c in batch])
        return [fake_outcome(c) for c in batch]

    ev = Evolution(GAConfig(pop=8, generations=1, seed=4, min_budget=1, max_budget=4, eta=2, rerank_top=0),
                   seed_docs=seed_docs()).run(evaluate)
    assert GAConfig(min_budget=1, max_budget=4, eta=2).rungs == (1, 2, 4)
    assert [len(b) for b in batches] == [8, 4, 2]  # the best half of each rung continues
    assert {b[1:] for b in batches[1]} == {(2, 1, 1, "promotion")} and {b[1:] for b in batches[2]} == {(4, 2, 2, "promotion")}
    for lower, upper in zip(batches, batches[1:]):
        acc = {gid: trial_at(ev.cache, gid, lower[0][1])["val_acc"] for gid, *_ in lower}
        ranked = sorted(acc, key=lambda g: (-(acc[g] if acc[g] is not None else -1), g))
        assert {u[0] for u in upper} == set(ranked[:len(upper)])
    top = ev.hall_of_fame()[0]
    assert ev.cache[top.gid]["budget"] == 4 and ev.cache[top.gid]["level"] == 2
    assert ev.best_accuracy() == ev.cache[ev.by_fitness()[0].gid]["val_acc"] <= 1  # not the fitness (rung + acc)
    # the largest budget reached first, then the accuracy there
    assert fitness_of({"status": "ok", "val_acc": 0.3, "level": 1}, ("accuracy",)) > \
        fitness_of({"status": "ok", "val_acc": 0.9, "level": 0}, ("accuracy",))
    # compute is accounted per trial and per generation
    trials = [t for e in ev.cache.values() for t in e["trials"]]
    assert len(trials) == 14 and ev.logbook[0]["trials"] == 14
    assert ev.logbook[0]["compute"] == sum(t["compute"] for t in trials if t.get("compute"))


def test_eta_1_is_one_trial_per_genome_at_the_single_budget():
    kinds = []
    ev = Evolution(GAConfig(pop=6, generations=3, seed=2, min_budget=3, max_budget=3, eta=1, rerank_top=0),
                   seed_docs=seed_docs())
    ev.run(lambda b: (kinds.extend((c.kind, c.budget) for c in b), [fake_outcome(c) for c in b])[1])
    assert set(kinds) == {("first", 3)} and len(kinds) == len(ev.cache)
    assert GAConfig(min_budget=1, max_budget=4, eta=1).rungs == (4,)
    with pytest.raises(ValueError, match="budgets"):
        GAConfig(min_budget=5, max_budget=4)


@pytest.mark.parametrize("recipe", ["trial", "own"])
def test_reranking_retrains_the_top_genomes_with_other_seeds_and_orders_by_the_mean(tmp_path, recipe):
    """The mean counts the genome's own trial at the largest budget only when the re-ranking
    trains the same (trial) recipe."""
    batches = []

    def evaluate(batch):
        batches.append(batch)
        return [fake_outcome(c) for c in batch]

    ev = Evolution(GAConfig(pop=8, generations=2, seed=4, rerank_top=3, rerank_seeds=2, rerank_recipe=recipe),
                   seed_docs=seed_docs(), checkpoint_path=tmp_path / "checkpoint.json").run(evaluate)
    last = batches[-1]
    assert {c.kind for c in last} == {"rerank"} and len(last) == 6 and {c.seed for c in last} == {1, 2}
    assert all(c.budget == 4 for c in last)
    from fernas.fitness import reranked_accuracy

    means = {c.gid: reranked_accuracy(ev.cache[c.gid], 2, with_own=recipe == "trial") for c in last}
    reruns = {g: [t["val_acc"] for t in ev.cache[g]["trials"] if t["kind"] == "rerank"] for g in means}
    with_own = {g: (sum(v) + ev.cache[g]["val_acc"]) / (len(v) + 1) for g, v in reruns.items()}
    if recipe == "own":
        assert means == {g: sum(v) / len(v) for g, v in reruns.items()} and means != with_own
    else:
        assert means == with_own
    ranked = ev.hall_of_fame()
    assert [i.gid for i in ranked[:3]] == sorted(means, key=lambda g: (-means[g], g))  # by the mean
    assert ev.best().gid == ranked[0].gid and ev.done
    # a re-ranking trial leaves the genome's own standing (its budget and accuracy) as it was
    e = ev.cache[last[0].gid]
    own = [t for t in e["trials"] if t["kind"] != "rerank"][-1]
    assert e["val_acc"] == own["val_acc"] and e["kind"] != "rerank"


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "missing"])
def test_an_unreadable_checkpoint_resumes_from_the_copy_before_its_last_write(tmp_path, damage):
    """A machine crash or full disk that loses the last write of checkpoint.json: resume takes
    checkpoint.prev.json (one save behind, said in `recovered`) and decides as before; with
    both unreadable it refuses with one line naming the file."""
    import os

    path = tmp_path / "checkpoint.json"
    cfg = GAConfig(pop=6, generations=3, seed=4, max_mmacs=0)
    ev = Evolution(cfg, seed_docs=seed_docs(), checkpoint_path=path)
    ev.run(lambda batch: [fake_outcome(c) for c in batch])
    prev = path.with_name("checkpoint.prev.json")
    assert prev.is_file() and prev.read_bytes() != path.read_bytes()  # one save behind
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "random bytes":
        path.write_bytes(os.urandom(4096))
    else:
        path.unlink()
    back = Evolution.load(path)
    assert back.recovered and "checkpoint.prev.json" in back.recovered and str(path) in back.recovered
    assert back.checkpoint_path == path  # it goes on writing the checkpoint itself
    assert len(back.cache) >= len(ev.cache) - 1
    good = prev.read_bytes()
    back.save()  # the first save after the recovery keeps the good copy, not the unreadable file
    assert prev.read_bytes() == good and Evolution.load(path).recovered is None
    back.meta["marker"] = 1
    back.save()  # and then goes on as before: one save behind
    assert "marker" not in json.loads(prev.read_text())["meta"] and json.loads(path.read_text())["meta"]["marker"] == 1
    path.unlink() if damage == "missing" else path.write_text("{")
    prev.write_text("{")
    if damage != "missing":
        with pytest.raises(RunDirError, match=rf"^{re.escape(str(path))}: corrupt"):
            Evolution.load(path)


def test_a_run_directory_keeps_the_config_before_its_last_write(tmp_path, capsys):
    from fernas.search.rundir import RunDir, read_config

    rd = RunDir(tmp_path, {}, {})
    rd.write_config({"options": {"a": 1}, "first_started": "t0", "resumes": 0})
    rd.write_config({"options": {"a": 1}, "first_started": "t0", "resumes": 1})
    (tmp_path / "config.json").write_text('{"fernas_evolve_run": 3, "opt')
    assert read_config(tmp_path)["resumes"] == 0
    assert "config.prev.json" in capsys.readouterr().err
    rd.write_config({"options": {"a": 1}, "first_started": "t0", "resumes": 1})  # the resume's: the truncated
    assert read_config(tmp_path.parent / tmp_path.name)["resumes"] == 1          # file is not kept as .prev
    assert json.loads((tmp_path / "config.prev.json").read_text())["resumes"] == 0
    import os  # a kill between keep_previous's link and replace left its file; this process has that pid

    os.link(tmp_path / "config.json", tmp_path / f".config.prev.json.{os.getpid()}.tmp")
    rd.write_config({"options": {"a": 1}, "first_started": "t0", "resumes": 2})
    assert json.loads((tmp_path / "config.prev.json").read_text())["resumes"] == 1
    (tmp_path / "config.json").write_text('{"fernas_evolve_run": 3}')  # valid JSON that a resume cannot use
    assert read_config(tmp_path)["resumes"] == 1
    rd.write_config({"options": {"a": 1}, "first_started": "t0", "resumes": 2})
    assert json.loads((tmp_path / "config.prev.json").read_text())["resumes"] == 1  # the good copy stays


def run_out_of_order(ev: Evolution, order_seed: int, kill_after: int | None = None) -> tuple[list, int]:
    """Drive `ev` as the Tune searcher does: trials finish in a random order, and after each one
    the promotions that no running trial can change start at once.  Returns the trials run
    (gid, budget, seed) and how many started early; stops (a kill) after `kill_after` trials."""
    import random

    rng, ran, early = random.Random(order_seed), [], 0
    batch = ev.next_batch()
    while batch is not None:
        flying, started = list(batch), {(c.gid, c.budget, c.seed) for c in batch}
        while flying:
            if kill_after is not None and len(ran) == kill_after:
                return ran, early  # stands in for SIGKILL: the running trials are lost
            cand = flying.pop(rng.randrange(len(flying)))
            ran.append((cand.gid, cand.budget, cand.seed))
            ev.record(cand, fake_outcome(cand))
            for p in ev.certain_promotions():
                if (p.gid, p.budget, p.seed) not in started:
                    started.add((p.gid, p.budget, p.seed))
                    flying.append(p)
                    early += 1
        batch = ev.next_batch()
    return ran, early


def decisions(ev: Evolution) -> dict:
    """`snapshot` less the order trials finished in (which sets the cache's insertion order)."""
    return {**snapshot(ev), "cache": sorted(ev.cache)}


@pytest.mark.parametrize("order_seed", [0, 1, 2])
def test_promotions_started_before_a_rung_ends_change_no_decision(tmp_path, order_seed):
    cfg = dict(pop=8, generations=3, seed=5, min_budget=1, max_budget=4, eta=2, rerank_top=2, rerank_seeds=1)
    ref, _ = run_full(None, **cfg)
    ref_trials = sorted((e["gid"], t["budget"], t["kind"], t["seed"]) for e in ref.cache.values() for t in e["trials"])

    ev = Evolution(GAConfig(**cfg), seed_docs=seed_docs())
    ran, early = run_out_of_order(ev, order_seed)
    assert early > 0, "no promotion started before its rung ended"
    assert len(ran) == len(set(ran)), "a trial ran twice"
    assert decisions(ev) == decisions(ref)
    assert sorted((e["gid"], t["budget"], t["kind"], t["seed"]) for e in ev.cache.values() for t in e["trials"]) == ref_trials

    # killed while early promotions run, then resumed: nothing completed runs again, same decisions
    ckpt = tmp_path / "checkpoint.json"
    ev = Evolution(GAConfig(**cfg), seed_docs=seed_docs(), checkpoint_path=ckpt)
    before, _ = run_out_of_order(ev, order_seed, kill_after=len(ran) // 2 + order_seed)
    resumed = Evolution.load(ckpt, seed_docs=seed_docs())
    after, _ = run_out_of_order(resumed, order_seed + 10)
    assert not set(before) & set(after) and decisions(resumed) == decisions(ref)


def test_certain_promotions_are_only_those_no_running_trial_can_displace():
    from fernas.evolve import Candidate
    from fernas.evolve.fidelity import certain_promotions

    ev = Evolution(GAConfig(pop=8, generations=1, seed=0, min_budget=1, max_budget=2, eta=2), seed_docs=seed_docs())
    ev.rung = [Candidate(f"g{i}", [], {}, 0, budget=1) for i in range(8)]  # 4 of 8 are promoted
    for i, acc in enumerate([0.9, 0.8, 0.7, 0.6, 0.5]):  # 5 finished, 3 still running
        ev.cache[f"g{i}"] = {"gid": f"g{i}", "trials": [{"status": "ok", "val_acc": acc, "budget": 1, "kind": "first"}]}
    assert [c.gid for c in certain_promotions(ev)] == ["g0"]  # ranks 1..3 could still fall to 4..6
    ev.cache["g5"] = {"gid": "g5", "trials": [{"status": "failed", "val_acc": 0.0, "budget": 1, "kind": "first"}]}
    assert [c.gid for c in certain_promotions(ev)] == ["g0", "g1"]
    p = certain_promotions(ev)[0]
    assert (p.budget, p.level, p.resume_from, p.kind) == (2, 1, 1, "promotion")
    ev.cache["g0"]["trials"].append({"status": "ok", "val_acc": 0.9, "budget": 2, "kind": "promotion"})
    assert [c.gid for c in certain_promotions(ev)] == ["g1"]  # g0's promotion has run
    ev.rung = [replace(c, level=1, budget=2) for c in ev.rung]  # the last rung: nothing further
    assert certain_promotions(ev) == []


def test_the_seed_designs_are_kept_beside_the_best_and_named_at_the_end(tmp_path):
    import io

    from fernas.commands.evolve_console import EvolveConsole
    from fernas.fitness import is_ok
    from fernas.search.rundir import RunDir

    ev, _ = run_full(None, pop=6, generations=1, seed=3, rerank_top=0)
    seeds = [gid for gid, e in ev.cache.items() if e.get("origin") == "seed" and is_ok(e)]
    assert len(seeds) >= 3
    designs, warm = set(seeds[:2]), seeds[2]  # the third stands for a warm start's genome: a seed, not a design
    names = {seeds[0]: "same", seeds[1]: "same", warm: "evolved-x"}  # two designs of one name
    (tmp_path / "seed_designs").mkdir()
    (tmp_path / "seed_designs" / "stale.json").write_text("{}")
    RunDir(tmp_path, names, {}, designs).write_seed_designs(ev)
    files = {p.name: G.load_genome(p) for p in (tmp_path / "seed_designs").glob("*.json")}
    assert set(files) == {"same.json", f"same_{seeds[1]}.json"}  # neither overwrites the other; stale removed
    assert {d["evolve"]["gid"] for d in files.values()} == designs
    assert all(d["evolve"]["rank"] is None and d["evolve"]["val_acc"] == ev.cache[d["evolve"]["gid"]]["val_acc"]
               for d in files.values())

    (tmp_path / "config.json").write_text(json.dumps({"options": {
        "data": "fer2013.csv", "data_args": {"labels": "votes new.csv", "skip_bad": True, "data_seed": 2}}}))
    printed = io.StringIO()
    EvolveConsole(stream=printed, quiet=True)._seed_designs(tmp_path, best_gid="another", epochs=64)
    first, hint = printed.getvalue().splitlines()
    top = max(designs, key=lambda gid: fitness_of(ev.cache[gid], ev.cfg.objectives, ev.cfg.chance_level)[0])
    assert first.startswith("seed designs trained: 2 in ") and f"{ev.cache[top]['val_acc']:.4f}" in first
    assert hint.endswith(f"fernas train {tmp_path}/best.json {tmp_path}/seed_designs/*.json --data fer2013.csv "
                         "--labels 'votes new.csv' --skip-bad --data-seed 2 --epochs 64 --fine-tune-epochs 2 "
                         "--train-crops 1")
    # with the run's --seed-genomes files at hand, the designs' own files (their own batch size:
    # the run's copies carry its trial batch)
    own = tmp_path / "designs" / "same design.json"
    own.parent.mkdir()
    G.save_genome({**G.from_vector(ev.cache[seeds[0]]["vector"]), "name": "same"}, own)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["options"]["seed_genomes"] = [str(own)]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    printed = io.StringIO()
    EvolveConsole(stream=printed, quiet=True)._seed_designs(tmp_path, best_gid="another", epochs=64)
    assert f"fernas train {tmp_path}/best.json '{own}' --data fer2013.csv" in printed.getvalue().splitlines()[1]
    printed = io.StringIO()  # the best genome is a seed design: said, and nothing to compare
    EvolveConsole(stream=printed, quiet=True)._seed_designs(tmp_path, best_gid=seeds[1], epochs=48)
    assert printed.getvalue().count("\n") == 1 and "it is the best genome: no new genome beat it" in printed.getvalue()
    RunDir(tmp_path, names, {}, set()).write_seed_designs(ev)  # no design any more: no stale file stays
    assert list((tmp_path / "seed_designs").glob("*.json")) == []


def test_an_own_recipe_reranking_trial_trains_the_genomes_batch_with_the_decode_augmentation():
    from fernas.evolve.config import Candidate
    from fernas.search.trial import TrialBudget, with_recipe
    from fernas.search.tune_adapter import own_recipe

    ga = GAConfig(max_budget=8, rerank_recipe="own", rerank_schedule=48, rerank_warmup=8)
    cand = Candidate("g", [0], None, 0, budget=8, kind="rerank", seed=1)
    config = own_recipe(cand, ga)
    assert config == {"recipe": "own", "schedule_epochs": 48, "warmup": 8}
    trial = TrialBudget(epochs=8, schedule_epochs=8, batch=32, augment="none")
    assert with_recipe(trial, config) == TrialBudget(epochs=8, schedule_epochs=48, batch=0, augment="vgg",
                                                     augment_warmup=8)  # decode --train's warm-up too
    # a run stored before the warm-up re-ranks as it did, without one
    assert GAConfig().rerank_warmup == 0
    assert with_recipe(trial, {"recipe": "own", "schedule_epochs": 48}).augment_warmup == 0
    assert with_recipe(trial, {}) == trial  # every other trial keeps the run's trial recipe
    assert own_recipe(Candidate("g", [0], None, 0, budget=8, kind="first"), ga) == {}
    assert own_recipe(cand, GAConfig(max_budget=8, rerank_recipe="trial")) == {}


def test_an_own_recipe_reranking_orders_by_its_own_trainings_alone():
    """Two re-ranked genomes whose order flips when the trial-recipe accuracy is averaged in."""
    from types import SimpleNamespace

    def entry(own_acc, reruns):
        trials = [{"kind": "rerank", "status": "ok", "val_acc": a, "val_loss": 1.0, "seed": i + 1}
                  for i, a in enumerate(reruns)]
        return {"status": "ok", "level": 1, "val_acc": own_acc, "val_loss": 1.0, "trials": trials}

    cache = {"fast": entry(0.9, [0.30]), "slow": entry(0.5, [0.50])}  # fast: 0.60 with its trial, 0.30 without
    inds = [SimpleNamespace(gid=g, fitness=SimpleNamespace(values=(1.0,))) for g in ("fast", "slow")]
    order = {}
    for recipe in ("trial", "own"):
        ev = Evolution(GAConfig(min_budget=2, max_budget=4, eta=2, rerank_recipe=recipe))
        ev.cache = cache
        order[recipe] = [i.gid for i in ev._ranked(inds)]
    assert order == {"trial": ["fast", "slow"], "own": ["slow", "fast"]}


@pytest.mark.parametrize("val_images, expected", [(0, ["design", "child", "far"]), (560, ["child", "design", "far"]),
                                                  (100_000, ["design", "child", "far"])])
def test_re_ranking_means_within_one_standard_error_tie_and_the_search_fitness_decides(val_images, expected):
    """equal_compute_fairb seed 1: the seed design re-ranked 0.277, a child 0.271 (standard
    error of the difference on 560 images: 0.027); the child's search fitness is higher."""
    from types import SimpleNamespace

    def entry(reruns):
        trials = [{"kind": "rerank", "status": "ok", "val_acc": a, "val_loss": 1.0, "seed": i + 1}
                  for i, a in enumerate(reruns)]
        return {"status": "ok", "level": 1, "val_acc": 0.5, "val_loss": 1.0, "trials": trials}

    ev = Evolution(GAConfig(min_budget=4, max_budget=8, eta=2, rerank_recipe="own", val_images=val_images))
    ev.cache = {"design": entry([0.277]), "child": entry([0.271]), "far": entry([0.200])}
    fitness = {"design": 1.770, "child": 1.836, "far": 1.900}  # level + accuracy: "far" is the fittest
    inds = [SimpleNamespace(gid=g, fitness=SimpleNamespace(values=(f,))) for g, f in fitness.items()]
    assert [i.gid for i in ev._ranked(inds)] == expected  # "far" is 0.077 below: no tie, whatever its fitness
    from fernas.commands.evolve_console import _tie_note

    ev.hall_of_fame = lambda: ev._ranked(inds)
    note = _tie_note(ev, expected[0])
    assert note == ("" if expected[0] == "design" else
                    " (tied within one standard error with design's mean 0.2770: the search's accuracy decided)")


def test_at_chance_the_loss_orders_re_ranked_genomes_and_the_line_claims_no_tie():
    """equal_compute_fairb seed 0, random-sh: both re-ranking means at chance (0.143 and 0.157 at
    a chance level of 0.1576); the lower loss had started to learn, the fitter one never did."""
    from types import SimpleNamespace

    from fernas.commands.evolve_console import _tie_note

    def entry(acc, loss):
        trial = {"kind": "rerank", "status": "ok", "val_acc": acc, "val_loss": loss, "seed": 1}
        return {"status": "ok", "level": 1, "val_acc": 0.8, "val_loss": 1.0, "trials": [trial]}

    ev = Evolution(GAConfig(min_budget=4, max_budget=8, eta=2, rerank_recipe="own", val_images=560,
                            chance_level=0.1576))
    ev.cache = {"learning": entry(0.143, 1.80), "flat": entry(0.157, 1.95)}
    inds = [SimpleNamespace(gid=g, fitness=SimpleNamespace(values=(f,))) for g, f in (("learning", 1.818),
                                                                                      ("flat", 1.841))]
    assert [i.gid for i in ev._ranked(inds)] == ["learning", "flat"]
    ev.hall_of_fame = lambda: ev._ranked(inds)
    assert _tie_note(ev, "learning") == ""


def test_rerank_order_ties_a_group_then_goes_on_from_the_next_highest():
    from fernas.fitness import difference_se, rerank_order

    assert difference_se(0.5, (1, 1), 0) == 0.0
    assert difference_se(0.5, (1, 1), 500) == pytest.approx((0.25 * 2 / 500) ** 0.5)
    assert difference_se(0.5, (2, 2), 500) < difference_se(0.5, (1, 1), 500)  # more trainings, smaller error
    # a (0.50) ties b (0.48) on 500 images (se 0.032), not c (0.40); c ties d (0.39)
    scored = [("a", 0.50, 1, 1.0, True), ("b", 0.48, 1, 2.0, True), ("c", 0.40, 1, 1.0, True), ("d", 0.39, 1, 3.0, True)]
    assert rerank_order(scored, 500) == ["b", "a", "d", "c"]
    assert rerank_order(scored, 0) == ["a", "b", "c", "d"]
    # a group is an unbroken run from the top: "c" (one training) would tie "a", "b" (four) does
    # not, so "c" cannot join a's group over "b"; it ties "b" instead (and is the fitter)
    uneven = [("a", 0.50, 1, 1.0, True), ("b", 0.472, 4, 2.0, True), ("c", 0.471, 1, 3.0, True)]
    assert rerank_order(uneven, 500) == ["a", "c", "b"]
    # at chance (equal_compute_fairb seed 0, random-sh): the lower loss still orders, whatever the fitness
    chance = [("learning", 0.1576 + 2e-8, 1, 1.818, False), ("flat", 0.1576 + 1e-8, 1, 1.841, False)]
    assert rerank_order(chance, 560) == ["learning", "flat"]


def test_the_best_genomes_line_says_what_re_ranked_it_or_why_nothing_did():
    from fernas.commands.evolve_console import _reranking_note

    cfg = GAConfig(max_budget=4, rerank_recipe="own", rerank_budget=8)
    refused = {"kind": "rerank", "status": "skipped", "error": "too large for host memory: training needs about 9 GiB"}
    entry = {"status": "ok", "level": 1, "val_acc": 0.5, "trials": [refused]}
    assert _reranking_note(cfg, entry) == " (not re-ranked: too large for host memory: training needs about 9 GiB)"
    entry["trials"].append({"kind": "rerank", "status": "ok", "val_acc": 0.4, "val_loss": 1.0, "seed": 2})
    assert _reranking_note(cfg, entry) == " (re-ranked: own recipe, 8 epochs, mean 0.4000 over 1 training(s))"
    assert _reranking_note(cfg, {"status": "ok", "trials": []}) == ""


@pytest.mark.parametrize("fields", [dict(rerank_budget=-1), dict(rerank_recipe="own", rerank_budget=64),
                                    dict(rerank_recipe="trial", rerank_budget=8)])
def test_a_re_ranking_that_cannot_train_as_configured_is_refused(fields):
    with pytest.raises(ValueError, match="rerank"):
        GAConfig(max_budget=4, **fields)  # (own: a schedule of 48 shorter than 64 epochs; trial: 8 is not max_budget)
    assert GAConfig(max_budget=4, rerank_recipe="own", rerank_budget=48).rerank_epochs == 48
