"""What a search says of itself as it starts or resumes: a warning or a hint line, each from the
run's settings and state alone (no training), so that a surprise costs a line, not a night."""

from __future__ import annotations

from fernas import genome as G
from fernas.search.options import DEFAULT_TRIAL_AUGMENT, DEFAULT_TRIAL_BATCH, EvolveOptions
from fernas.search.trial import trainer_version

SLOW_ON_CPUS_MMACS = 200  # seed designs above this train an epoch of FER2013 in tens of minutes on a few cores


def recipe_hint(opts: EvolveOptions) -> str:
    """The --trial-batch/--trial-augment flags of the default trial recipe that the run lacks
    (the batch only where the run's space allows it: `with_batch` refuses it otherwise)."""
    from fernas.space import BY_FIELD, Space

    gene = BY_FIELD["train.batch_size"]
    allowed = Space.from_config(opts.ga.space).allowed[gene.index] if opts.ga.space else None
    fits = allowed is None or G.BATCH_SIZES.index(DEFAULT_TRIAL_BATCH) in allowed
    flags = [f"--trial-batch {DEFAULT_TRIAL_BATCH}"] if opts.trial_batch != DEFAULT_TRIAL_BATCH and fits else []
    if opts.trial_augment != DEFAULT_TRIAL_AUGMENT:
        flags.append(f"--trial-augment {DEFAULT_TRIAL_AUGMENT}")
    return " ".join(flags)


def slow_on_cpus(seed_docs: list[dict], ga) -> list[tuple[str, float]]:
    """(name, million multiply-adds) of the seed designs the run admits (`admitted_seeds`: under
    its caps, inside its space) that are slow to train on CPUs: generation 0 trains them all,
    which a CPU-only first run does not expect."""
    from fernas.evolve.sampling import admitted_seeds
    from fernas.model import plan

    left = {id(d) for d, _ in admitted_seeds(ga, seed_docs)[1]}
    costs = [(d.get("name", "?"), plan(d).macs / 1e6) for d in seed_docs if id(d) not in left]
    return [(n, m) for n, m in costs if m > SLOW_ON_CPUS_MMACS]


def other_trainers(ev) -> tuple[list[str], int] | None:
    """(the trainer versions other than this one's that measured trials of `ev`, how many such
    trials), or None: a resume after fernas changed how a trial scores (`TRIAL_VERSION`)."""
    now = trainer_version()
    others = [t["trainer"] for e in ev.cache.values() for t in e.get("trials", []) if t.get("trainer", now) != now]
    return (sorted(set(others)), len(others)) if others else None


def say_other_trainers(ev, console) -> None:
    """A resumed run's warning line when another trainer measured some of its trials."""
    older = other_trainers(ev)
    if older:
        console.say(f"fernas: warning: {older[1]} of this run's trials were measured by another trainer "
                    f"({', '.join(older[0])}; now: {trainer_version()}); their scores and the new trials' may not "
                    "compare (a warm start from this run into a new one trains them again)", err=True)


def unusable_gpus(ray_info: dict, console) -> None:
    """Ray reserves GPUs that torch cannot use (a driver too old for this CUDA build): the trials
    would fail one by one, so say why at once."""
    import torch

    if not torch.cuda.is_available():
        from fernas.device import cuda_unusable_reason

        console.say(f"warning: Ray sees {ray_info['gpus']:g} GPU(s) but torch cannot use them "
                    f"(torch.cuda.is_available() is False): {cuda_unusable_reason()}", err=True)
