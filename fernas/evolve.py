"""The genetic algorithm: DEAP evolves genome vectors; evaluation is somebody else's job.

Follows DEAP's canonical shape (the `ga/onemax.py` and `ga/nsga2.py` examples and the
checkpoint tutorial): types declared once, a toolbox that reads like a recipe, a
generation loop of select -> clone/vary (`algorithms.varAnd`) -> evaluate the invalid only
-> replace, statistics in a `Logbook`, and a checkpoint that is a plain dict.

- One objective (validation accuracy): tournament selection plus `elite` unchanged copies
  of the best, and a `HallOfFame`.
- Two objectives (accuracy and params / macs / latency): NSGA-II, i.e. parents by a
  crowded binary tournament and survivors by `selNSGA2(pop + offspring)` (elitist by
  construction, so `elite` is unused), and a `ParetoFront`.

- Variation for small budgets, both on by default: `mutation="creep"` (a mutated gene steps to a
  neighbouring value half the time) and `novel_offspring` (a child that would train nothing new
  is mutated until it is a never-seen genome under the cost cap).  `mutation="uniform"` and
  `novel_offspring=False` give DEAP's textbook loop (`varAnd` + `mutUniformInt`).
- Random search (`strategy="random"`, the baseline of seeds 001/004): generation 0 is the same
  initial population; every later generation is `pop` fresh never-seen genomes drawn from the
  same initial distribution (random-search-space samples + uniform), through the same cache,
  checkpoint, hall of fame and logbook, so the two strategies are one flag apart.

Initial distribution: the seed designs, then a `search_space_share` of samples from the
random-search spaces of seeds 001/004, then uniform random vectors; with `max_mmacs` every
fresh draw is under the cost cap (seed designs above it are left out), so no trial slot of
generation 0 goes to a genome the driver would refuse.

The loop never calls Ray.  `Evolution.steps()` is a generator that yields the
*never-evaluated* genomes of a generation as `Candidate`s; whoever drives it (the
synchronous `Evolution.run(evaluate_batch)` in tests, the Ray Tune searcher in
`fernas.search`) records one outcome per candidate with `record()` and resumes it.

Fitness cache: outcomes are keyed by genome id (the hash of the active genome content),
so a genome is trained once per run, however often selection or crossover brings it back.
The cache is part of the checkpoint and is rewritten after every completed trial; the rest
of the GA state (population, hall of fame, logbook, generation, python/numpy/torch RNG
states) is written at every generation boundary.  Resuming replays the interrupted
generation from the boundary: the same RNG state makes the same offspring, whose outcomes
come from the cache, so no completed trial runs twice and every decision is the same as in
an uninterrupted run.  The GA keeps its own RNG states and swaps them in around each step,
so whatever else in the process draws random numbers (Ray, the trainer) cannot perturb it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Generator, Iterable

import numpy as np
import torch
from deap import algorithms, base, creator, tools

from fernas import genome as G
from fernas.errors import GenomeError, RunDirError
from fernas.io import atomic_write_text

CHECKPOINT_VERSION = 1

# objective name -> (outcome field, DEAP weight).  Accuracy is maximised, costs minimised.
OBJECTIVES = {
    "accuracy": ("val_acc", 1.0),
    "params": ("params", -1.0),
    "macs": ("macs", -1.0),
    "latency": ("latency_ms", -1.0),
}
# A failed trial scores below any trained network (chance is 1/7) and costs more than any:
# finite, so NSGA-II's crowding distances stay finite.
PENALTY = {"val_acc": 0.0, "params": 1e12, "macs": 1e15, "latency_ms": 1e9}
OK_STATUSES = ("ok", "stopped")
STRATEGIES = ("ga", "random")  # "stopped": ended early by ASHA, its accuracy still counts


@dataclass
class GAConfig:
    pop: int = 40
    generations: int = 30  # including generation 0, the initial population: pop x generations trials at most
    cxpb: float = 0.7  # crossover probability per pair (DEAP examples use 0.5-0.9)
    mutpb: float = 0.3  # probability that an individual is mutated at all
    indpb: float = 0.1  # per-gene probability that a mutated child's gene changes (~4 of 44 genes)
    tournsize: int = 3  # selection pressure of the single-objective tournament
    elite: int = 2  # best individuals copied unchanged into the next generation (single objective)
    hof_size: int = 10  # genomes kept in the hall of fame (single objective)
    objectives: tuple[str, ...] = ("accuracy",)
    seed: int = 0
    # initial population mix: seed files first, then this share of the rest from the
    # random-search spaces of seeds 001/004 (alternating), the remainder uniform random
    search_space_share: float = 0.5
    # "ga": evolve.  "random": the baseline of seeds 001/004 -- generation 0 is the same initial
    # population, every later generation is `pop` fresh genomes drawn from the same initial
    # distribution (search-space share + uniform), never-seen ones only; selection and variation unused.
    strategy: str = "ga"
    # Genomes above this many million multiply-adds per 40x40 image are refused untrained by the
    # driver (`fernas evolve --max-mmacs`); fresh samples (initial population, random strategy) are
    # drawn below it, and seed designs above it are left out, so no slot of generation 0 is wasted.
    # 0 = no cap.  Offspring above it stay possible: they get the penalty (selection pressure).
    max_mmacs: float = 0.0
    # "uniform": a mutated gene is redrawn uniformly within its bounds (DEAP's mutUniformInt).
    # "creep": half the time a step to a neighbouring value instead (genes index ordered tables:
    # widths, learning rates, batch sizes ...), a local move around good genomes.
    mutation: str = "creep"
    # Every child that is not a new genome (an unchanged copy, a re-met or duplicate genome: a
    # cache hit that trains nothing) is mutated until it is new and under max_mmacs.  Small
    # populations converge to copies of the best; this turns those slots into local search
    # around the parents instead of idle generations.
    # Default since the issue-7 benchmark: with both on, the GA reached random search's final best
    # within half the trials (13 of 26, 10 seeds); with neither it did not (11 of 20, 2 seeds):
    # benchmarks/results/search_quality.json and search_quality_textbook.json (both on a noisy
    # one-epoch fitness: see fitness_noise.json).
    novel_offspring: bool = True
    # Behaviour revision, for runs written by older code: 1 = novel_offspring applied to the
    # single-objective GA only; 2 = also under NSGA-II.
    revision: int = 2

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        if self.mutation not in ("uniform", "creep"):
            raise ValueError(f"unknown mutation {self.mutation!r} (expected uniform or creep)")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (expected {' or '.join(STRATEGIES)})")

    @classmethod
    def from_stored(cls, stored: dict) -> "GAConfig":
        """A config read back from a run; runs written before a field existed keep its old value."""
        return cls(**{**PRE_DEFAULTS, **stored})

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def same_decisions(self, other: "GAConfig") -> bool:
        """Whether two configs make the same decisions (fields this strategy does not use ignored)."""
        unused = set()
        if self.strategy == "random":  # no selection or variation at all
            unused |= {"cxpb", "mutpb", "indpb", "tournsize", "elite", "mutation", "novel_offspring", "revision"}
        elif not self.multi:  # revision 2 changed NSGA-II only
            unused.add("revision")
        mine, theirs = asdict(self), asdict(other)
        return all(mine[k] == theirs[k] for k in mine if k not in unused)


# Values of fields added after runs were first written (what those runs did), for resume.
PRE_DEFAULTS = {"strategy": "ga", "max_mmacs": 0.0, "mutation": "uniform", "novel_offspring": False,
                "revision": 1}


@dataclass
class Candidate:
    """One genome to train: its id, integer vector, decoded document and generation."""
    gid: str
    vector: list[int]
    doc: dict
    generation: int
    cost_hint: float = 0.0  # for longest-first scheduling; filled by the driver


# ---- DEAP types (declared once: re-creating them warns and breaks pickling) -------------
def _ensure_types() -> None:
    if not hasattr(creator, "FernasFitness1"):
        creator.create("FernasFitness1", base.Fitness, weights=(1.0,))
    if not hasattr(creator, "FernasFitness2"):
        creator.create("FernasFitness2", base.Fitness, weights=(1.0, -1.0))
    if not hasattr(creator, "FernasIndividual1"):
        creator.create("FernasIndividual1", list, fitness=creator.FernasFitness1, gid=None)
    if not hasattr(creator, "FernasIndividual2"):
        creator.create("FernasIndividual2", list, fitness=creator.FernasFitness2, gid=None)


def individual_class(n_objectives: int):
    _ensure_types()
    return creator.FernasIndividual1 if n_objectives == 1 else creator.FernasIndividual2


def parse_objectives(text: str) -> tuple[str, ...]:
    """'accuracy' | 'accuracy,params' | 'accuracy,latency' (| 'accuracy,macs')."""
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    for n in names:
        if n not in OBJECTIVES:
            raise ValueError(f"unknown objective {n!r} (expected accuracy, params, macs or latency)")
    if not names or names[0] != "accuracy" or len(names) > 2 or len(set(names)) != len(names):
        raise ValueError(f"objectives {text!r}: expected accuracy, accuracy,params, accuracy,latency "
                         "or accuracy,macs")
    return names


def fitness_of(outcome: dict, objectives: Iterable[str]) -> tuple[float, ...]:
    """The fitness tuple of a trial outcome; a failed trial gets the penalty on every objective."""
    ok = outcome.get("status") in OK_STATUSES
    values = []
    for name in objectives:
        key = OBJECTIVES[name][0]
        v = outcome.get(key)
        if not ok or v is None or not math.isfinite(float(v)):
            v = PENALTY[key]
        values.append(float(v))
    return tuple(values)


def vector_id(vec: list[int]) -> tuple[str, dict | None]:
    """(genome id, document) of a vector; an undecodable vector gets a stable 'bad-' id."""
    try:
        doc = G.from_vector(list(vec))
    except GenomeError:
        return "bad-" + hashlib.sha256(json.dumps(list(vec)).encode()).hexdigest()[:8], None
    return G.genome_id(doc), doc


# ---- RNG states as JSON ------------------------------------------------------------------
def get_rng_states() -> dict:
    py = random.getstate()
    npst = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
            "torch": torch.get_rng_state().tolist()}


def set_rng_states(st: dict) -> None:
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))


def seeded_rng_states(seed: int) -> dict:
    """The RNG states that `seed` gives, without disturbing the process's own states."""
    saved = get_rng_states()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    states = get_rng_states()
    set_rng_states(saved)
    return states


# ---- the GA ------------------------------------------------------------------------------
class Evolution:
    """GA state plus the generation loop; see the module docstring for the protocol."""

    def __init__(self, cfg: GAConfig, seed_docs: list[dict] | None = None,
                 checkpoint_path: str | Path | None = None,
                 on_generation: Callable[["Evolution", dict], None] | None = None,
                 meta: dict | None = None):
        self.cfg = cfg
        self.seed_docs = list(seed_docs or [])
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.on_generation = on_generation
        self.meta = dict(meta or {})  # free-form, saved with the checkpoint (run config)
        self.Ind = individual_class(len(cfg.objectives))
        self.toolbox = self._make_toolbox()
        self.gen = 0  # the generation being built/evaluated
        self.population: list = []
        self.hof = self._make_hof()
        self.logbook = tools.Logbook()
        self.logbook.header = ["gen", "evals", "cache_hits", "failures", "skipped", "penalised", "min", "mean", "max",
                               "std", "best"]
        self.cache: dict[str, dict] = {}  # genome id -> outcome (one per trained genome)
        self.rng = seeded_rng_states(cfg.seed)  # the GA's running stream (swapped in by _advance)
        self.boundary_rng = self.rng  # its state at the last generation boundary (checkpointed)
        self.done = False
        self._gen_obj: Generator | None = None
        self.pending: list[Candidate] = []

    # -- recipe
    def _make_toolbox(self) -> base.Toolbox:
        low = [lo for lo, _ in G.GENE_BOUNDS]
        up = [hi for _, hi in G.GENE_BOUNDS]
        tb = base.Toolbox()
        # Two-point crossover and per-gene uniform redraw within the gene's bounds keep every
        # vector inside GENE_BOUNDS, and every such vector decodes to a valid genome.
        tb.register("mate", tools.cxTwoPoint)
        if self.cfg.mutation == "creep":
            tb.register("mutate", _mut_creep, low=low, up=up, indpb=self.cfg.indpb)
        else:
            tb.register("mutate", tools.mutUniformInt, low=low, up=up, indpb=self.cfg.indpb)
        if self.cfg.multi:
            tb.register("select", _sel_crowded_tournament)
        else:
            tb.register("select", tools.selTournament, tournsize=self.cfg.tournsize)
        return tb

    def _make_hof(self):
        same = lambda a, b: a.gid == b.gid  # noqa: E731 - one entry per network, not per vector
        if self.cfg.multi:
            return tools.ParetoFront(similar=same)
        return tools.HallOfFame(self.cfg.hof_size, similar=same)

    def _ind(self, vec: list[int], values: tuple | None = None, gid: str | None = None):
        ind = self.Ind(int(v) for v in vec)
        ind.gid = gid or vector_id(ind)[0]
        if values is not None:
            ind.fitness.values = tuple(values)
        return ind

    # -- initial population
    def _initial_population(self) -> list:
        """Seed designs, then random-search-space samples (001/004), then uniform random; unique ids."""
        pop, seen = [], set()

        def add(vec) -> None:
            ind = self._ind(vec)
            if ind.gid not in seen and len(pop) < self.cfg.pop:
                seen.add(ind.gid)
                pop.append(ind)

        for doc in self.seed_docs:
            if self._fits(doc):
                add(G.to_vector(doc))
        return pop + self._sample_fresh(self.cfg.pop - len(pop), seen)

    def _fits(self, doc: dict | None) -> bool:
        """Whether a genome is under the cost cap (`max_mmacs`), so the driver will train it."""
        if not self.cfg.max_mmacs:
            return True
        if doc is None:
            return False
        from fernas.model import estimate_macs  # pure function of the document
        return estimate_macs(doc) <= self.cfg.max_mmacs * 1e6

    def _sample_fresh(self, n: int, seen: set) -> list:
        """`n` never-seen genomes from the initial distribution: this share of them from the
        random-search spaces of seeds 001/004 (alternating), the rest uniform random.
        Shared by the initial population and the random strategy; adds their ids to `seen`."""
        out: list = []

        def add(vec) -> None:
            ind = self._ind(vec)
            if ind.gid not in seen and len(out) < n and (not self.cfg.max_mmacs or self._fits(vector_id(ind)[1])):
                seen.add(ind.gid)
                out.append(ind)

        target = max(0, round(n * self.cfg.search_space_share))
        spaces = ("sarmah", "vulpe")
        for tries in range(50 * max(n, 1)):
            if len(out) >= min(target, n):
                break
            add(G.to_vector(G.sample_random_search_space(random, spaces[tries % 2])))
        # Under a small cap the search spaces of 001/004 (wide convs) may have nothing: uniform fills up.
        for _ in range(2000 * max(n, 1)):
            if len(out) >= n:
                break
            add(G.random_vector(random))
        return out

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
                if doc is None:  # cannot happen with GENE_BOUNDS; penalised rather than fatal
                    self.record(ind.gid, {"status": "failed", "error": "vector does not decode",
                                          "vector": list(ind)})
                else:
                    todo[ind.gid] = Candidate(ind.gid, list(ind), doc, self.gen)
            elif entry.get("generation") == self.gen:
                evals += 1  # trained in this generation before a resume: still this generation's evaluation
            else:
                hits += 1
        if todo:
            self.pending = list(todo.values())
            yield self.pending
            missing = [c.gid for c in self.pending if c.gid not in self.cache]
            if missing:
                raise RuntimeError(f"evaluation returned no outcome for {missing}")
            self.pending = []
        for ind in need:
            ind.fitness.values = fitness_of(self.cache[ind.gid], self.cfg.objectives)
        mine = [self.cache[gid] for gid in seen if self.cache[gid].get("generation") == self.gen]
        skipped = sum(1 for e in mine if e.get("status") == "skipped")  # refused untrained (too large)
        failures = sum(1 for e in mine if e.get("status") not in OK_STATUSES) - skipped
        return {"evals": evals, "cache_hits": hits, "failures": failures, "skipped": skipped}

    def record(self, gid: str, outcome: dict) -> None:
        """Store one trial's outcome in the cache and persist it (called per completed trial)."""
        outcome = dict(outcome)
        outcome.setdefault("generation", self.gen)
        if "vector" not in outcome:
            outcome["vector"] = next((c.vector for c in self.pending if c.gid == gid), None)
        outcome["gid"] = gid
        self.cache[gid] = outcome
        self.save()

    def _log(self, counts: dict) -> dict:
        # Statistics of the trained members only: a penalised genome (failed, refused over the cost
        # cap) has no accuracy, and counting its penalty 0 would drag the mean towards nothing.
        ok = [ind for ind in self.population if self.cache.get(ind.gid, {}).get("status") in OK_STATUSES]
        acc = np.array([ind.fitness.values[0] for ind in ok], dtype=float)
        stats = ({"min": float(acc.min()), "mean": float(acc.mean()), "max": float(acc.max()),
                  "std": float(acc.std())} if len(acc)  # None when nothing trained (strict JSON: no NaN)
                 else dict.fromkeys(("min", "mean", "max", "std")))
        best = max(ind.fitness.values[0] for ind in self.hof) if len(self.hof) else None
        rec = {"gen": self.gen, **counts, "penalised": len(self.population) - len(ok), **stats,
               "best": None if best is None else float(best)}
        self.logbook.record(**rec)
        return rec

    # -- the generation loop (DEAP's canonical shape)
    def steps(self) -> Generator[list[Candidate], None, None]:
        cfg, tb = self.cfg, self.toolbox
        if self.gen == 0:
            if not self.population:
                self.population = self._initial_population()
                self.boundary_rng = get_rng_states()  # gen 0 resumes after the draws of the initial population
                self.save()
            counts = yield from self._evaluate(self.population)
            if cfg.multi:
                self.population = tools.selNSGA2(self.population, len(self.population))  # sets crowding
            self.hof.update(self.population)
            self._end_generation(counts)
        while self.gen < cfg.generations:
            if cfg.strategy == "random":
                # Fresh samples, never seen before this generation (entries this generation made
                # before a resume do not count, so the replay draws the same genomes).
                seen = {gid for gid, e in self.cache.items() if e.get("generation", -1) < self.gen}
                seen |= {ind.gid for ind in self.population}
                offspring = self._sample_fresh(cfg.pop, seen)
                counts = yield from self._evaluate(offspring)
                self.population = offspring
            elif cfg.multi:
                parents = tb.select(self.population, len(self.population))
                offspring = algorithms.varAnd(parents, tb, cfg.cxpb, cfg.mutpb)
                if cfg.novel_offspring and cfg.revision >= 2:
                    self._make_novel(offspring, self.population)
                counts = yield from self._evaluate(offspring)
                self.population = tools.selNSGA2(self.population + offspring, cfg.pop)
            else:
                n_elite = min(cfg.elite, len(self.population))
                elites = [tb.clone(ind) for ind in tools.selBest(self.population, n_elite)]
                parents = tb.select(self.population, len(self.population) - n_elite)
                offspring = algorithms.varAnd(parents, tb, cfg.cxpb, cfg.mutpb)
                if cfg.novel_offspring:
                    self._make_novel(offspring, elites)
                counts = yield from self._evaluate(offspring)
                self.population = elites + offspring
            self.hof.update(self.population)
            self._end_generation(counts)
        self.done = True
        self.save()

    def _make_novel(self, offspring: list, keep: list) -> None:
        """Mutate each child that would train nothing new until it is a never-seen genome that fits."""
        # Entries of this generation (made before a resume) do not count: the replay decides the same.
        seen = {gid for gid, e in self.cache.items() if e.get("generation", -1) < self.gen}
        seen |= {ind.gid for ind in keep} | {ind.gid for ind in self.population}
        for child in offspring:
            start = list(child)
            gid, doc = vector_id(child)
            for attempt in range(100):
                if gid not in seen and self._fits(doc):
                    break
                if attempt and attempt % 10 == 0:
                    # drifted too far (e.g. a crossover child far above the cap): start again from
                    # the child, then, after half the attempts, from one of the kept best
                    src = start if attempt < 50 or not keep else list(random.choice(keep))
                    child[:] = src
                self.toolbox.mutate(child)
                gid, doc = vector_id(child)
            del child.fitness.values
            child.gid = gid
            seen.add(gid)

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
    def _advance(self) -> list[Candidate] | None:
        """Run the loop to its next batch of genomes to train (None when finished)."""
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

    def start(self) -> list[Candidate] | None:
        return self._advance()

    def resume_batch(self) -> list[Candidate] | None:
        """Call after `record()`ing an outcome for every candidate of the last batch."""
        return self._advance()

    def run(self, evaluate_batch: Callable[[list[Candidate]], list[dict]]) -> "Evolution":
        """Synchronous driver: `evaluate_batch(candidates) -> outcomes` (same order)."""
        batch = self.start()
        while batch is not None:
            for cand, outcome in zip(batch, evaluate_batch(batch)):
                self.record(cand.gid, outcome)
            batch = self.resume_batch()
        return self

    # -- results
    def best(self):
        """The individual with the highest accuracy ever seen (hall of fame / Pareto front)."""
        return max(self.hof, key=lambda ind: ind.fitness.values[0]) if len(self.hof) else None

    def hall_of_fame(self) -> list:
        """Hall of fame by accuracy, best first (the Pareto front, for two objectives)."""
        return sorted(self.hof, key=lambda ind: -ind.fitness.values[0])

    # -- checkpoint: a plain dict, written atomically
    def state_dict(self) -> dict:
        pack = lambda ind: {"vector": list(ind), "gid": ind.gid,  # noqa: E731
                            "fitness": list(ind.fitness.values) if ind.fitness.valid else None}
        # While a generation is in flight, self.population is still the population of its start
        # boundary (steps() replaces it only after the evaluation), and boundary_rng is the RNG
        # state of that boundary: the pair a resume replays the generation from.
        return {
            "fernas_evolve_checkpoint": CHECKPOINT_VERSION,
            "config": asdict(self.cfg),
            "generation": self.gen,
            "done": self.done,
            "population": [pack(i) for i in self.population],
            "hall_of_fame": [pack(i) for i in self.hof],
            "logbook": list(self.logbook),
            "rng": self.boundary_rng,
            "cache": self.cache,
            "meta": self.meta,
        }

    def save(self) -> None:
        if self.checkpoint_path is None:
            return
        atomic_write_text(self.checkpoint_path, json.dumps(self.state_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "Evolution":
        """Rebuild the GA from a checkpoint; RunDirError names the file if it is missing or corrupt."""
        path = Path(path)
        if not path.is_file():
            raise RunDirError(f"{path}: no GA checkpoint here (nothing to resume)")
        try:
            st = json.loads(path.read_text(encoding="utf-8"))
            if st.get("fernas_evolve_checkpoint") != CHECKPOINT_VERSION:
                raise ValueError(f"unsupported checkpoint version {st.get('fernas_evolve_checkpoint')!r}")
            cfg = GAConfig.from_stored(st["config"])
            ev = cls(cfg, checkpoint_path=path, **kwargs)
            ev.gen = int(st["generation"])
            ev.done = bool(st["done"])
            ev.cache = dict(st["cache"])
            ev.population = [ev._ind(p["vector"], p["fitness"], p["gid"]) for p in st["population"]]
            for p in st["hall_of_fame"]:
                ev.hof.insert(ev._ind(p["vector"], p["fitness"], p["gid"]))
            for rec in st["logbook"]:
                ev.logbook.record(**rec)
            saved = get_rng_states()
            set_rng_states(st["rng"])  # validates the states before we rely on them
            set_rng_states(saved)
            ev.rng = ev.boundary_rng = st["rng"]
            ev.meta = dict(st.get("meta", {}))
        except RunDirError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            raise RunDirError(f"{path}: corrupt GA checkpoint ({type(exc).__name__}: {exc}); "
                              "cannot resume") from None
        return ev


def _mut_creep(individual: list, low: list[int], up: list[int], indpb: float) -> tuple:
    """Per gene with probability indpb: a step of +-1 within the bounds (half the time), else a
    uniform redraw.  Keeps every vector inside GENE_BOUNDS, like mutUniformInt."""
    for i, (lo, hi) in enumerate(zip(low, up)):
        if random.random() < indpb and hi > lo:
            if random.random() < 0.5:
                step = random.choice((-1, 1))
                v = individual[i] + step
                individual[i] = v if lo <= v <= hi else individual[i] - step
            else:
                individual[i] = random.randint(lo, hi)
    return (individual,)


def _sel_crowded_tournament(individuals: list, k: int) -> list:
    """NSGA-II parent selection: binary tournaments on (Pareto rank, crowding distance).

    DEAP's `selTournamentDCD` needs a population size divisible by 4; this one does not.
    """
    fronts = tools.sortNondominated(individuals, len(individuals))
    rank = {}
    for r, front in enumerate(fronts):
        tools.emo.assignCrowdingDist(front)
        for ind in front:
            rank[id(ind)] = r
    chosen = []
    for _ in range(k):
        a, b = random.sample(individuals, 2) if len(individuals) > 1 else (individuals[0],) * 2
        if rank[id(a)] != rank[id(b)]:
            chosen.append(a if rank[id(a)] < rank[id(b)] else b)
        elif a.fitness.crowding_dist != b.fitness.crowding_dist:
            chosen.append(a if a.fitness.crowding_dist > b.fitness.crowding_dist else b)
        else:
            chosen.append(a if random.random() < 0.5 else b)
    return chosen
