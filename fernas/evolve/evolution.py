"""The generation loop: DEAP's canonical shape, driven one batch of genomes at a time.

`Evolution.steps()` is a generator that yields the *never-evaluated* genomes of a
generation as `Candidate`s; whoever drives it (the synchronous `run(evaluate_batch)` in
tests, the Ray Tune searcher of `fernas.search`) records one outcome per candidate with
`record()` and resumes it.  The loop never calls Ray.

- One objective: tournament selection plus `elite` unchanged copies of the best, and a
  `HallOfFame`.  Two objectives: NSGA-II (crowded binary tournament for parents,
  `selNSGA2(pop + offspring)` for survivors, elitist by construction) and a `ParetoFront`.
  Either way an `immigrants` share of the new genomes are fresh uniform draws, not children.
- Random search (`strategy="random"`): every later generation is `pop` fresh never-seen
  genomes from the initial distribution, through the same cache, checkpoint and outputs.
- Successive halving inside each generation (`GAConfig.rungs`): the generation's new genomes
  train the first budget, the best 1/eta of each rung (`fitness.promoted`) continue to the
  next budget from their checkpoints.  A genome's fitness is the largest budget it reached,
  then its accuracy there.  One batch is yielded per rung.
- The search ends after its generations, by `patience`, or in mid-generation by a budget
  (`budget_end`); the re-ranking of the best (`fidelity.rerank`) follows either way.

Fitness cache: outcomes are keyed by genome id, so a genome is trained once per run.  The
cache is persisted after every completed trial, the rest of the state at every generation
boundary.  Resuming replays the interrupted generation from the boundary: the same RNG
state makes the same offspring, whose outcomes come from the cache, so no completed trial
runs twice and every decision is the same as in an uninterrupted run.  The GA keeps its own
RNG states and swaps them in around each step, so whatever else in the process draws random
numbers (Ray, the trainer) cannot perturb it.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Generator

import numpy as np
from deap import algorithms, tools

from fernas.errors import OtherVersionError, RunDirError
from fernas.evolve import checkpoint as ck
from fernas.evolve.config import Candidate, GAConfig
from fernas.evolve.operators import individual_class, make_hall_of_fame, make_novel, make_toolbox, vector_id
from fernas.evolve.rng import get_rng_states, seeded_rng_states, set_rng_states
from fernas.evolve.sampling import initial_population, sample_fresh
from fernas.evolve.standing import Standing
from fernas.evolve.budget_end import BudgetEnd
from fernas.evolve.fidelity import bracket, certain_promotions, rerank
from fernas.fitness import fitness_of, is_ok, is_rerank
from fernas.io import atomic_write_text, keep_previous, previous_path

LOG_HEADER = ["gen", "evals", "cache_hits", "failures", "skipped", "penalised", "trials", "compute", "min", "mean",
              "max", "std", "best", "best_fitness"]


class Evolution(BudgetEnd, Standing):
    """GA state plus the generation loop; see the module docstring for the protocol."""

    def __init__(self, cfg: GAConfig, seed_docs: list[dict] | None = None,
                 checkpoint_path: str | Path | None = None,
                 on_generation: Callable[["Evolution", dict], None] | None = None):
        self.cfg = cfg
        self.seed_docs = list(seed_docs or [])
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_generation = on_generation
        self.meta: dict = {}  # free-form, saved with the checkpoint (the driver's bookkeeping)
        self.recovered: str | None = None  # set by `load` when it had to take the previous checkpoint
        self._current_unreadable = False  # checkpoint_path is unreadable until the next save (recovered)
        self.Ind = individual_class(cfg.objectives)
        self.toolbox = make_toolbox(cfg)
        self.gen = 0  # the generation being built/evaluated
        self.population: list = []
        self.hof = make_hall_of_fame(cfg)
        self.logbook = tools.Logbook()
        self.logbook.header = list(LOG_HEADER)
        self.cache: dict[str, dict] = {}  # genome id -> outcome (one per trained genome)
        self.rng = seeded_rng_states(cfg.seed)  # the GA's running stream (swapped in by _advance)
        self.boundary_rng = self.rng  # its state at the last generation boundary (checkpointed)
        self.done = False
        self._gen_obj: Generator | None = None
        self.pending: list[Candidate] = []
        self.rung: list[Candidate] = []  # the members of the successive-halving rung in flight

    def _ind(self, vec: list[int], values: tuple | None = None, gid: str | None = None, origin: str = ""):
        ind = self.Ind(int(v) for v in vec)
        ind.gid, ind.origin = gid or vector_id(ind)[0], origin
        if values is not None:
            ind.fitness.values = tuple(values)
        return ind

    def _fits(self, doc: dict | None) -> bool:
        return self.cfg.refusal(doc) is None

    def _seen_before(self) -> set:
        """Ids trained before this generation (entries it made before a resume do not count,
        so the replay decides the same) and those of the current population."""
        seen = {gid for gid, e in self.cache.items() if e.get("generation", -1) < self.gen}
        return seen | {ind.gid for ind in self.population}

    # -- evaluation through the cache
    def _evaluate(self, inds: list) -> Generator[list[Candidate], None, dict]:
        """Give fitness to the individuals that lack it; yields the genomes to train."""
        need = [ind for ind in inds if not ind.fitness.valid]
        todo: dict[str, Candidate] = {}
        seen: set[str] = set()
        evals = hits = 0
        for ind in need:
            ind.gid, doc = vector_id(ind)
            if ind.gid in seen:
                hits += 1  # a duplicate within this generation
                continue
            seen.add(ind.gid)
            entry = self.cache.get(ind.gid)
            if entry is None:
                evals += 1
                cand = Candidate(ind.gid, list(ind), doc, self.gen, budget=self.cfg.rungs[0], origin=ind.origin)
                if doc is None:  # cannot happen with GENE_BOUNDS; penalised rather than fatal
                    self.record(cand, {"status": "failed", "error": "vector does not decode"})
                else:
                    todo[ind.gid] = cand
            elif entry.get("generation") == self.gen:
                # trained in this generation before a resume: still this generation's evaluation,
                # and still in its bracket (which runs only the trials it lacks)
                evals += 1
                todo[ind.gid] = Candidate(ind.gid, list(ind), doc, self.gen, budget=self.cfg.rungs[0],
                                          origin=ind.origin)
            else:
                hits += 1
        if todo:
            yield from bracket(self, list(todo.values()))
        for ind in need:
            ind.fitness.values = fitness_of(self.cache[ind.gid], self.cfg.objectives, self.cfg.chance_level)
        mine = [self.cache[gid] for gid in seen if self.cache[gid].get("generation") == self.gen]
        skipped = sum(1 for e in mine if e.get("status") == "skipped")  # refused untrained (too large)
        failures = sum(1 for e in mine if not is_ok(e)) - skipped
        # the generation's search trials (a re-ranking after a budget ended the search is not one)
        trials = [t for e in mine for t in e.get("trials", []) if not is_rerank(t)]
        return {"evals": evals, "cache_hits": hits, "failures": failures, "skipped": skipped,
                "trials": len(trials), "compute": sum(int(t.get("compute") or 0) for t in trials)}

    def record(self, cand: Candidate, outcome: dict, save: bool = True) -> None:
        """Store one trial's outcome in the cache and persist it (called per completed trial;
        `save=False`: the caller saves, with what else that write must hold).

        The genome's entry lists its trials; its own fields are those of its first trial, then
        of each later one that trained (a failed promotion leaves it where it stood), and of the
        retry of a trial that ran out of memory beside others (kind `oom`, never the genome's)."""
        entry = self.cache.get(cand.gid) or {"gid": cand.gid, "generation": cand.generation,
                                              "vector": cand.vector, "origin": cand.origin, "trials": []}
        trial = {**outcome, "budget": cand.budget, "level": cand.level, "kind": cand.kind, "seed": cand.seed}
        only_oom_before = all(t.get("kind") == "oom" for t in entry["trials"])
        entry["trials"].append(trial)
        if only_oom_before or (is_ok(trial) and cand.kind != "rerank"):
            entry.update(trial)
        self.cache[cand.gid] = entry
        if save:
            self.save()

    def _log(self, counts: dict) -> dict:
        # Statistics of the trained members only: a penalised genome (failed, refused over the cost
        # cap) has no accuracy, and counting its penalty 0 would drag the mean towards nothing.
        ok = [ind for ind in self.population if is_ok(self.cache.get(ind.gid, {}))]
        # accuracy at the largest budget each reached (the fitness also ranks by that budget)
        acc = np.array([float(self.cache[ind.gid]["val_acc"]) for ind in ok], dtype=float)
        stats = ({"min": float(acc.min()), "mean": float(acc.mean()), "max": float(acc.max()),
                  "std": float(acc.std())} if len(acc)  # None when nothing trained (strict JSON: no NaN)
                 else dict.fromkeys(("min", "mean", "max", "std")))
        fittest = self.by_fitness()  # not the re-ranked order: a reopened or warm-started run must see progress
        # "best": the fittest genome's accuracy; below the chance level a lower-loss genome is the
        # fitter, so it can fall where best_fitness (what patience compares) rises
        best = self.cache.get(fittest[0].gid, {}).get("val_acc") if fittest else None
        rec = {"gen": self.gen, **counts, "penalised": len(self.population) - len(ok), **stats,
               "best": None if best is None else float(best),
               "best_fitness": float(fittest[0].fitness.values[0]) if fittest else None}
        self.logbook.record(**rec)
        return rec

    # -- the generation loop (DEAP's canonical shape)
    def steps(self) -> Generator[list[Candidate], None, None]:
        if self.ended_by_budget:
            yield from self._after_search_end()
        else:
            yield from self._search()
        yield from rerank(self)
        self.done = True
        self.save()

    def _search(self) -> Generator[list[Candidate], None, None]:
        if self.gen == 0:
            if not self.population:
                self.population = initial_population(self.cfg, self.seed_docs, self._ind)
                self.boundary_rng = get_rng_states()  # gen 0 resumes after the draws of the initial population
                self.save()
            counts = yield from self._evaluate(self.population)
            if self.cfg.multi:
                self.population = tools.selNSGA2(self.population, len(self.population))  # sets crowding
            self.hof.update(self.population)
            self._end_generation(counts)
        while self.gen < self.cfg.generations and not self.stalled():
            counts = yield from self._next_generation()
            self.hof.update(self.population)
            self._end_generation(counts)
        self.meta["ended_by"] = "generations" if self.gen >= self.cfg.generations else "patience"
        self.save()  # from now on no budget ends the search (`search_over`), after a kill too

    def stalled(self) -> bool:
        """No better best in the last `patience` generations (0: never)."""
        p = self.cfg.patience
        bests = [-1.0 if r["best_fitness"] is None else float(r["best_fitness"]) for r in self.logbook]
        return bool(p) and len(bests) > p and bests[-1] <= bests[-1 - p]

    def reopen(self) -> bool:
        """Let a run that patience ended evolve on, when its (raised) patience allows; True if so.
        Re-ranking runs again at the new end, for the top genomes by fitness not re-ranked yet."""
        if not (self.done and self.meta.get("ended_by") == "patience" and not self.stalled()
                and self.gen < self.cfg.generations):
            return False
        self.done, self._gen_obj = False, None
        del self.meta["ended_by"]  # set again at the new end
        return True

    def _next_generation(self) -> Generator[list[Candidate], None, dict]:
        """Select, vary, evaluate the new, replace: one generation of the configured strategy."""
        cfg, tb = self.cfg, self.toolbox
        if cfg.strategy == "random":
            offspring = sample_fresh(cfg, cfg.pop, self._seen_before(), self._ind)
            counts = yield from self._evaluate(offspring)
            self.population = offspring
        elif cfg.multi:
            n_imm = cfg.n_immigrants(len(self.population))
            parents = tb.select(self.population, len(self.population) - n_imm)
            offspring = self._children(parents, n_imm, self.population, self._seen_before())
            counts = yield from self._evaluate(offspring)
            self.population = tools.selNSGA2(self.population + offspring, cfg.pop)
        else:
            n_elite = min(cfg.elite, len(self.population))
            elites = [tb.clone(ind) for ind in tools.selBest(self.population, n_elite)]
            n_imm = cfg.n_immigrants(len(self.population) - n_elite)
            parents = tb.select(self.population, len(self.population) - n_elite - n_imm)
            offspring = self._children(parents, n_imm, elites, self._seen_before() | {ind.gid for ind in elites})
            counts = yield from self._evaluate(offspring)
            self.population = elites + offspring
        return counts

    def _children(self, parents: list, n_immigrants: int, keep: list, seen: set) -> list:
        """Children of `parents` (crossover, mutation; made novel when configured), then
        `n_immigrants` never-seen uniform draws from the search space (the seeds' spaces had
        their share in generation 0).  `keep`: the kept best, where make_novel restarts a
        child that drifted; `seen`: ids not to repeat.  A space too small for the immigrants
        gets mutated copies of the kept best instead, so the population keeps its size."""
        cfg, tb = self.cfg, self.toolbox
        offspring = algorithms.varAnd(parents, tb, cfg.cxpb, cfg.mutpb)
        if cfg.novel_offspring:
            make_novel(offspring, keep, seen, tb.mutate, self._fits)
        seen = seen | {vector_id(child)[0] for child in offspring}  # ids are stale without make_novel
        fresh = sample_fresh(cfg, n_immigrants, seen, self._ind, share=0.0)
        fill = [tb.clone(random.choice(keep or self.population)) for _ in range(n_immigrants - len(fresh))]
        make_novel(fill, keep, seen, tb.mutate, self._fits)
        for child in offspring + fill:
            child.origin = "child"
        return offspring + fresh + fill

    def _end_generation(self, counts: dict) -> None:
        rec = self._log(counts)
        self.gen += 1
        # Capture the RNG as it stands at the boundary: a resume starts the next generation from it.
        self.boundary_rng = get_rng_states()
        self.save()
        if self.on_generation is not None:
            self.on_generation(self, rec)
            set_rng_states(self.boundary_rng)  # whatever the callback drew does not reach the GA

    # -- drivers
    def next_batch(self) -> list[Candidate] | None:
        """Run the loop to its next batch of genomes to train (None when finished).  Call it
        first, then again after `record()`ing an outcome for every candidate of the last batch."""
        if self._gen_obj is None:
            self._gen_obj = self.steps()
        saved = get_rng_states()
        set_rng_states(self.rng)  # the GA's own stream, isolated from everything else
        try:
            batch = next(self._gen_obj)
        except StopIteration:
            batch = None
        finally:
            self.rng = get_rng_states()
            set_rng_states(saved)
        return batch

    def certain_promotions(self) -> list[Candidate]:
        """Next-rung trials that may start before the rung in flight ends (`fidelity`)."""
        return certain_promotions(self)

    def run(self, evaluate_batch: Callable[[list[Candidate]], list[dict]]) -> "Evolution":
        """Synchronous driver: `evaluate_batch(candidates) -> outcomes` (same order)."""
        batch = self.next_batch()
        while batch is not None:
            for cand, outcome in zip(batch, evaluate_batch(batch)):
                self.record(cand, outcome)
            batch = self.next_batch()
        return self

    # -- checkpoint: a plain dict, written atomically
    def state_dict(self) -> dict:
        # While a generation is in flight, self.population is still the population of its start
        # boundary (steps() replaces it only after the evaluation), and boundary_rng is the RNG
        # state of that boundary: the pair a resume replays the generation from.
        return {ck.VERSION_KEY: ck.CHECKPOINT_VERSION, "config": asdict(self.cfg), "generation": self.gen,
                "done": self.done, "population": [ck.pack(i) for i in self.population],
                "hall_of_fame": [ck.pack(i) for i in self.hof], "logbook": list(self.logbook),
                "rng": self.boundary_rng, "cache": self.cache, "meta": self.meta}

    def save(self) -> None:
        """Write the checkpoint atomically; the one it replaces stays as the previous copy
        (`ck.previous_path`: a hard link, so there is no moment without a checkpoint)."""
        if self.checkpoint_path is None:
            return
        path = self.checkpoint_path
        if path.is_file() and not self._current_unreadable:  # after a recovery the .prev copy is the good one
            keep_previous(path)
        atomic_write_text(path, json.dumps(self.state_dict()) + "\n")
        self._current_unreadable = False

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "Evolution":
        """Rebuild the GA from a checkpoint, or from the copy before it when the checkpoint is
        unreadable (a disk that lost the last write): `recovered` then says so.  RunDirError
        names the file when neither can be used."""
        path = Path(path)
        try:
            ev = cls._load(path, path, **kwargs)
        except OtherVersionError:
            raise
        except RunDirError as exc:
            prev = previous_path(path)
            if not prev.is_file():
                raise
            try:
                ev = cls._load(prev, path, **kwargs)
            except RunDirError:
                raise exc from None
            ev._current_unreadable = True
            ev.recovered = (f"{path} is unreadable ({str(exc).split(': ', 1)[-1][:160]}); resuming from "
                            f"{prev.name}, the copy before its last write: what that write recorded (one trial "
                            "or a generation's end) is done again")
        return ev

    @classmethod
    def _load(cls, source: Path, path: Path, **kwargs) -> "Evolution":
        """The GA of checkpoint file `source`, saving to `path` from then on."""
        st = ck.read_checkpoint(source)
        try:
            ev = cls(GAConfig(**st["config"]), checkpoint_path=path, **kwargs)
            ev.gen, ev.done, ev.cache = int(st["generation"]), bool(st["done"]), dict(st["cache"])
            ev.population = [ev._ind(p["vector"], p["fitness"], p["gid"], p["origin"]) for p in st["population"]]
            for p in st["hall_of_fame"]:
                ev.hof.insert(ev._ind(p["vector"], p["fitness"], p["gid"], p["origin"]))
            for rec in st["logbook"]:
                ev.logbook.record(**rec)
            saved = get_rng_states()
            set_rng_states(st["rng"])  # validates the states before we rely on them
            set_rng_states(saved)
            ev.rng = ev.boundary_rng = st["rng"]
            ev.meta = dict(st.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise RunDirError(f"{source}: corrupt GA checkpoint ({type(exc).__name__}: {exc}); "
                              "cannot resume") from None
        return ev
