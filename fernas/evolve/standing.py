"""Where the genomes of a run stand: the fittest so far, the hall of fame (the re-ranked
genomes first, by their mean, ties within noise by fitness: `fitness.rerank_order`), and the
fitness order that selection and the re-ranking go by.

A mixin of `fernas.evolve.evolution.Evolution`: it reads the GA's `hof`, `cache`, `cfg`, `gen`
and `ended_by_budget`, and changes nothing.
"""

from __future__ import annotations

from fernas.evolve.operators import make_hall_of_fame
from fernas.fitness import (LOSS_TIE_WEIGHT, fitness_of, is_ok, rerank_order, reranked_score,
                            reranked_trainings)


class Standing:
    """The run's rankings (mixed into `Evolution`)."""

    def best_accuracy(self) -> float | None:
        """The validation accuracy of the fittest genome so far, None before the first (its
        fitness value adds the genome's rung, to rank larger budgets first)."""
        ranked = self.by_fitness()
        acc = self.cache.get(ranked[0].gid, {}).get("val_acc") if ranked else None
        return None if acc is None else float(acc)

    def best(self):
        """The individual with the highest accuracy ever seen (hall of fame / Pareto front)."""
        ranked = self.hall_of_fame()
        return ranked[0] if ranked else None

    def hall_of_fame(self) -> list:
        """Hall of fame by accuracy, best first (the Pareto front, for two objectives): the
        re-ranked genomes first, by their mean over seeds (means above chance within one standard
        error tie, and fitness orders them); the rest by fitness.  Remaining ties go by genome
        id: the order in which tied genomes entered depends on timing and resumes."""
        return self._ranked(self._standing())

    def by_fitness(self) -> list:
        """The hall of fame by fitness alone (ties by genome id): what the logbook's best,
        patience and the choice of genomes to re-rank go by."""
        return sorted(self._standing(), key=lambda ind: (-ind.fitness.values[0], ind.gid))

    def hall_of_fame_so_far(self) -> list:
        """`hall_of_fame()` with the genomes the generation in flight has trained so far (a run
        stopped mid-generation); for the output files: the GA's own hall of fame takes a
        generation's genomes at its end."""
        return self._ranked(self._standing(with_unfinished=True))

    def _standing(self, with_unfinished: bool = False):
        """The hall of fame; with the unfinished generation's trained genomes where a budget ended
        the search (or asked).  Kept out of `self.hof`: a reopened search replays the generation,
        whose genomes may then reach larger budgets."""
        partial = self._trained_this_generation() if with_unfinished or self.ended_by_budget else []
        if not partial:
            return self.hof
        hof = make_hall_of_fame(self.cfg)
        hof.update(list(self.hof) + partial)
        return hof

    def _trained_this_generation(self) -> list:
        """Individuals of the genomes the generation in flight has trained, and of its population
        with outcomes (in generation 0 a warm start's genomes, not yet in the hall of fame), with
        their fitness."""
        fit = lambda e: fitness_of(e, self.cfg.objectives, self.cfg.chance_level)  # noqa: E731
        gids = {gid for gid, e in self.cache.items() if e.get("generation") == self.gen}
        gids |= {ind.gid for ind in self.population}
        return [self._ind(self.cache[gid]["vector"], fit(self.cache[gid]), gid) for gid in sorted(gids)
                if is_ok(self.cache.get(gid, {}))]

    def _ranked(self, hof) -> list:
        """The re-ranked genomes first (`fitness.rerank_order`: by their mean, ties within noise
        above chance by fitness), then the others by fitness."""
        top, cfg = len(self.cfg.rungs) - 1, self.cfg
        scored, rest = [], []
        for ind in hof:
            entry = self.cache.get(ind.gid, {})
            mean = reranked_score(entry, top, cfg.chance_level, cfg.rerank_with_own)
            if mean is None:
                rest.append(ind)
            else:
                n = len(reranked_trainings(entry, top, cfg.rerank_with_own))
                # above chance: some training above it (at chance alone the score is the level + the loss term)
                scored.append((ind.gid, mean, n, ind.fitness.values[0], mean > cfg.chance_level + LOSS_TIE_WEIGHT))
        by_gid = {ind.gid: ind for ind in hof}
        return ([by_gid[g] for g in rerank_order(scored, cfg.val_images)]
                + sorted(rest, key=lambda ind: (-ind.fitness.values[0], ind.gid)))
