"""The GA's settings (`GAConfig`) and the unit of work it hands out (`Candidate`)."""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("ga", "random")
MUTATIONS = ("uniform", "creep")


# Epochs of an own-recipe re-ranking training unless told (`evolve --rerank-budget`): of the
# four finalists of 6 demo runs, each trained 48+2 by the decode protocol, the validation
# accuracy after 8 epochs picked the best in 5 runs, after 4 in 3, after 16 in 4
# (benchmarks/finalists.py, finalists_proxy.json).
OWN_RERANK_EPOCHS = 8


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
    objectives: tuple[str, ...] = ("accuracy",)  # names in fernas.objectives.OBJECTIVES
    seed: int = 0
    # Initial population mix: seed files first, then this share of the rest from the
    # random-search spaces of seeds 001/004 (alternating), the remainder uniform random.
    search_space_share: float = 0.5
    # "ga": evolve.  "random": the baseline of seeds 001/004 -- generation 0 is the same initial
    # population, every later generation is `pop` fresh genomes drawn from the same initial
    # distribution (search-space share + uniform), never-seen ones only; selection and variation unused.
    strategy: str = "ga"
    # Genomes above this many million multiply-adds per 40x40 image are refused untrained (the
    # penalty: selection pressure against them); fresh samples (initial population, random strategy)
    # are drawn below it and seed designs above it are left out, so no slot of generation 0 is
    # wasted.  3000 keeps every seed design (the largest, the 8-conv model of seed 001, has ~1,770).
    # 0 = no cap.
    max_mmacs: float = 3000.0
    # Genomes above this many million multiply-add equivalents per 40x40 image (multiply-adds
    # plus fernas.model.ACTIVATION_COST_MACS per activation element: what a trial's time follows
    # on CPUs) are refused like those above max_mmacs.  0 = no such cap.
    max_cost: float = 0.0
    # "uniform": a mutated gene is redrawn uniformly among its allowed values (mut_uniform; in the
    # full space the draws of DEAP's mutUniformInt), then a learning rate outside its
    # optimizer's range is redrawn inside it (Space.fit_lr, after every operator).
    # "creep": half the time a step to a neighbouring value instead (genes index ordered tables:
    # widths, learning rates, batch sizes ...), a local move around good genomes.
    mutation: str = "creep"
    # Every child that is not a new genome (an unchanged copy, a re-met or duplicate genome: a
    # cache hit that trains nothing) is mutated until it is new and under max_mmacs.  Small
    # populations converge to copies of the best; this turns those slots into local search
    # around the parents instead of idle generations (measured in the README's search results).
    novel_offspring: bool = True
    # Random immigrants (Grefenstette 1992): this share of each generation's non-elite slots
    # (of the offspring, with two objectives) goes to never-seen genomes drawn uniformly from
    # the search space instead of children: exploration that children of a weak generation lack
    # (docs/search_experiments.md: +0.07 at budgets 4->8, worse at the demo's 2->4).  Unused by
    # random search.  0 = children only.
    immigrants: float = 0.0
    # Successive halving inside each generation (Hyperband's inner loop): every new genome trains
    # `min_budget` epochs, the best 1/eta of each rung continue from their checkpoint to the next
    # budget (min_budget x eta^k, the last one max_budget).  Many cheap trials, the promising ones
    # measured longer.  eta = 1: every genome trains max_budget epochs (one budget per trial).
    min_budget: int = 1
    max_budget: int = 4
    eta: int = 2
    # At the end of the run the `rerank_top` best genomes train `rerank_epochs` epochs again
    # with `rerank_seeds` other seeds each; best.json and the hall of fame's order come from the
    # mean (one short training is partly luck).  0 = no re-ranking.
    rerank_top: int = 3
    rerank_seeds: int = 2
    # What the re-ranking trainings train: "trial", the trial recipe of every other trial to
    # max_budget (the mean then includes the genome's own trial there), or "own", the first
    # `rerank_budget` epochs of the decode protocol: the genome's own batch size and the VGG
    # paper's augmentation, its schedule spanning `rerank_schedule` epochs (the length the kept
    # network trains; the mean is over these trainings alone).  "own" sees what the trial recipe
    # hides (a genome that learns only without augmentation; benchmarks/finalists.py).  Stored
    # runs without the fields re-rank as they did: "trial", and 0 (= max_budget).
    rerank_recipe: str = "trial"
    rerank_schedule: int = 48
    rerank_budget: int = 0
    # With "own": epochs of augmentation warm-up (`TrainConfig.augment_warmup`; decode's is 8, but
    # the first epochs without it rank the picks' warmed-up decodes better: --rerank-warmup's help).
    # Stored runs without the field re-rank as they did: 0.
    rerank_warmup: int = 0

    @property
    def rerank_with_own(self) -> bool:
        """Whether a re-ranked genome's mean counts its own trial at max_budget: only when the
        re-ranking trains the same (trial) recipe (`fitness.reranked_trainings`)."""
        return self.rerank_recipe != "own"

    def trains_own_recipe(self, cand: "Candidate") -> bool:
        """Whether the trial trains the genome's own recipe: an own-recipe re-ranking trial."""
        return cand.kind == "rerank" and self.rerank_recipe == "own"

    @property
    def rerank_epochs(self) -> int:
        """Epochs of each re-ranking training: `rerank_budget`, or max_budget when it is 0."""
        return self.rerank_budget or self.max_budget

    # The search space (fernas.space.Space.to_config: {gene field: [raw values]} of the narrowed
    # genes; None = every value of every gene).  Fixed for the whole run: --resume refuses another.
    space: dict | None = None
    # Evolution ends after this many generations without a better best (0 = only --generations);
    # re-ranking then runs as at a normal end.  A run resumed with a larger patience goes on.
    patience: int = 0
    # The validation split's chance level (fitness.chance_level, set by the run from its data):
    # accuracies at or below it tie and the validation loss orders them (fitness.ranking_accuracy).
    chance_level: float = 0.0
    # The validation split's size (set by the run from its data): re-ranking means closer than one
    # standard error of their difference tie, and the search's fitness orders them
    # (fitness.rerank_order); 0: by the mean alone.
    val_images: int = 0

    def __post_init__(self) -> None:
        from fernas.objectives import parse_objectives

        self.objectives = parse_objectives(",".join(self.objectives))
        if self.mutation not in MUTATIONS:
            raise ValueError(f"unknown mutation {self.mutation!r} (expected uniform or creep)")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r} (expected {' or '.join(STRATEGIES)})")
        if not 0 <= self.immigrants <= 1:
            raise ValueError(f"immigrants {self.immigrants:g}: expected a share from 0 to 1")
        if not 1 <= self.min_budget <= self.max_budget or self.eta < 1:
            raise ValueError(f"budgets: need 1 <= min_budget ({self.min_budget}) <= max_budget "
                             f"({self.max_budget}) and eta ({self.eta}) >= 1")
        if self.rerank_warmup < 0:
            raise ValueError(f"rerank_warmup {self.rerank_warmup}: expected 0 or more epochs")
        if self.rerank_budget < 0:
            raise ValueError(f"rerank_budget {self.rerank_budget}: expected 0 (max_budget) or more epochs")
        if self.rerank_recipe == "own" and self.rerank_schedule < self.rerank_epochs:
            raise ValueError(f"rerank_schedule {self.rerank_schedule}: shorter than the re-ranking's "
                             f"{self.rerank_epochs} epochs")
        if self.rerank_with_own and self.rerank_epochs != self.max_budget:
            raise ValueError(f"rerank_budget {self.rerank_budget}: a trial-recipe re-ranking trains max_budget "
                             f"({self.max_budget}) epochs, its mean includes the genome's trial there")

    def n_immigrants(self, slots: int) -> int:
        """How many of a generation's `slots` new genomes are immigrants (halves round up)."""
        return int(slots * self.immigrants + 0.5)

    @property
    def rungs(self) -> tuple[int, ...]:
        """The budgets (epochs) of the rungs: (1, 2, 4) for min 1, max 4, eta 2."""
        if self.eta == 1 or self.min_budget == self.max_budget:
            return (self.max_budget,)
        out, b = [], self.min_budget
        while b < self.max_budget:
            out.append(b)
            b *= self.eta
        return (*out, self.max_budget)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    def refusal(self, doc: dict | None, macs: int | None = None, plan=None) -> str | None:
        """Why a genome is not trained (over a cost cap, undecodable), or None.  `macs` or `plan`
        (`fernas.model.plan(doc)`): what the caller has computed already."""
        if doc is None:
            return "the vector does not decode"
        if not self.max_mmacs and not self.max_cost:
            return None
        from fernas.model import plan as make_plan, training_cost  # pure functions of the document

        if plan is None and (macs is None or self.max_cost):
            plan = make_plan(doc)
        macs = plan.macs if macs is None else macs
        if self.max_mmacs and macs > self.max_mmacs * 1e6:
            return f"too large: about {macs / 1e6:.0f}M multiply-adds per image > --max-mmacs {self.max_mmacs:g}"
        cost = training_cost(plan) if self.max_cost else 0
        if self.max_cost and cost > self.max_cost * 1e6:
            return (f"too costly: about {cost / 1e6:.0f}M multiply-add equivalents per image "
                    f"(activation memory counted) > --max-cost {self.max_cost:g}")
        return None



RERANKING = -1  # the generation a progress display shows the re-ranking's trials under


@dataclass
class Candidate:
    """One trial to run: a genome (id, vector, document, generation) and its budget."""
    gid: str
    vector: list[int]
    doc: dict | None
    generation: int
    budget: int = 0  # train to this epoch of the max_budget-long schedule (own-recipe re-ranking: rerank_schedule)
    level: int = 0  # index of the budget among GAConfig.rungs
    resume_from: int = 0  # continue from the checkpoint at this epoch (0: train from scratch)
    # where the genome came from: seed (a seed design, or a warm start's hall of fame),
    # space-001 / space-004 (a sample of their random-search spaces), uniform (a uniform draw),
    # child (crossover and mutation)
    origin: str = ""
    kind: str = "first"  # first training | promotion (a larger budget) | rerank (another seed)
    # (trials.csv also shows `oom`: a trial out of memory beside others, retried alone)
    seed: int = 0  # added to the run's seed (x 1000): re-ranking trains with other seeds
    cost_hint: float = 0.0  # for longest-first scheduling; filled by the driver
