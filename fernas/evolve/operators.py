"""DEAP's side of the GA: types, the toolbox, and fernas' own operators.

Two-point crossover and the mutations keep every vector inside the run's search space
(`fernas.space`; by default every value in `GENE_BOUNDS`), and every such vector decodes to a
valid genome; a child's learning rate outside its optimizer's range is then redrawn inside
it.  All randomness comes from python's `random`, which the GA swaps to its own state around
each step (see `fernas.evolve.evolution`).
"""

from __future__ import annotations

import hashlib
import json
import random

from deap import base, creator, tools

from fernas import genome as G
from fernas.errors import GenomeError
from fernas.evolve.config import GAConfig
from fernas.objectives import weights
from fernas.space import Space


def individual_class(objectives: tuple[str, ...]):
    """The DEAP individual type of these objectives (created once: re-creating warns and breaks pickling)."""
    key = "_".join(objectives)
    fit, ind = f"FernasFitness_{key}", f"FernasIndividual_{key}"
    if not hasattr(creator, fit):
        creator.create(fit, base.Fitness, weights=weights(objectives))
    if not hasattr(creator, ind):
        creator.create(ind, list, fitness=getattr(creator, fit), gid=None, origin="")  # origin: Candidate.origin
    return getattr(creator, ind)


def vector_id(vec: list[int]) -> tuple[str, dict | None]:
    """(genome id, document) of a vector; an undecodable vector gets a stable 'bad-' id."""
    try:
        doc = G.from_vector(list(vec))
    except GenomeError:
        return "bad-" + hashlib.sha256(json.dumps(list(vec)).encode()).hexdigest()[:8], None
    return G.genome_id(doc), doc


def make_toolbox(cfg: GAConfig) -> base.Toolbox:
    space = Space.from_config(cfg.space)
    mutation = mut_creep if cfg.mutation == "creep" else mut_uniform
    tb = base.Toolbox()
    # Per-gene constraints: a child of two members is a member.  Then a child's learning rate
    # outside its optimizer's range is redrawn inside (a cut between the two genes, or a new
    # optimizer, mixes pairs that do not train); `random` is the GA's own state here.
    tb.register("mate", lambda a, b: tuple(space.fit_lr(c, random) for c in tools.cxTwoPoint(a, b)))
    tb.register("mutate", lambda ind: (space.fit_lr(mutation(ind, space.allowed, cfg.indpb)[0], random),))
    if cfg.multi:
        tb.register("select", sel_crowded_tournament)
    else:
        tb.register("select", tools.selTournament, tournsize=cfg.tournsize)
    return tb


def make_hall_of_fame(cfg: GAConfig):
    same = lambda a, b: a.gid == b.gid  # noqa: E731 - one entry per network, not per vector
    if cfg.multi:
        return tools.ParetoFront(similar=same)
    return tools.HallOfFame(cfg.hof_size, similar=same)


def mut_uniform(individual: list, allowed: tuple, indpb: float) -> tuple:
    """Per gene with probability indpb: a uniform redraw among its allowed values (in the full
    space the same draws as DEAP's mutUniformInt)."""
    for i, vals in enumerate(allowed):
        if random.random() < indpb:
            individual[i] = vals[random.randint(0, len(vals) - 1)]
    return (individual,)


def mut_creep(individual: list, allowed: tuple, indpb: float) -> tuple:
    """Per gene with probability indpb: a step to the neighbouring allowed value (half the
    time; reflected at the ends), else a uniform redraw among them.  Stays inside the space."""
    for i, vals in enumerate(allowed):
        if random.random() < indpb and len(vals) > 1:
            if random.random() < 0.5:
                step = random.choice((-1, 1))
                pos = vals.index(individual[i]) if individual[i] in vals else 0
                individual[i] = vals[pos + step] if 0 <= pos + step < len(vals) else vals[pos - step]
            else:
                individual[i] = vals[random.randint(0, len(vals) - 1)]
    return (individual,)


def sel_crowded_tournament(individuals: list, k: int) -> list:
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


def make_novel(offspring: list, keep: list, seen: set, mutate, fits) -> None:
    """Mutate each child that would train nothing new until it is a never-seen genome that `fits`.

    `seen`: ids that count as already trained (updated); `keep`: the kept best, a fallback
    start when a child drifted too far (e.g. a crossover child far above the cost cap).
    """
    for child in offspring:
        start = list(child)
        gid, doc = vector_id(child)
        for attempt in range(100):
            if gid not in seen and fits(doc):
                break
            if attempt and attempt % 10 == 0:
                # start again from the child, then, after half the attempts, from one of the kept best
                src = start if attempt < 50 or not keep else list(random.choice(keep))
                child[:] = src
            mutate(child)
            gid, doc = vector_id(child)
        del child.fitness.values
        child.gid = gid
        seen.add(gid)
