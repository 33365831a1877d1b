"""A trial: one genome trained briefly, measured, and scored.

`train_trial(doc, data, budget) -> outcome` is a plain function (no Ray): it builds the
genome's network, measures the cost objectives of `fernas.objectives` on it, trains it with
the real trainer for the budget's epochs, and calls `report(outcome_so_far)` after every
epoch (the outcome's accuracy follows the rule of `fernas.fitness`).  A diverged loss, an
out-of-memory or any other exception becomes a `failed` outcome with its reason, which the
GA penalises, except a storage error (ENOSPC, EDQUOT, EIO, EROFS: `STORAGE_ERRNOS`), whose
outcome carries `io_error`: not recorded, it ends the search, and a resume trains the genome
again.  An exception raised by `report` itself (Tune stopping the trial) propagates.

`run_trial` is the thin Ray Tune function trainable around it.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import time
from dataclasses import dataclass, replace

from fernas.dataset import CROP_SIZE
from fernas.fitness import outcome_fields, ranking_accuracy, validation_loss
from fernas.objectives import COSTS
from fernas.search.watchdog import TrialTimeout

# Test hook: FERNAS_FAULT_INJECT="GID=raise,GID2=exit,GID3=hang,GID4=stuck,GID5=oom" makes those
# genomes' trials raise an exception, kill their worker process, hang in Python, hang inside C
# code (where no exception reaches them) or run out of memory while sharing their device (`oom`;
# `oom-always`: alone too), so the failure paths are tested with real Ray.
FAULT_ENV = "FERNAS_FAULT_INJECT"
# Bump when a trial of the same genome, data, budget and seed would score differently (the
# trainer, augmentation, fitness rule): a warm start reuses only trials of the same version.
TRIAL_VERSION = 4


def trainer_version() -> str:
    """What a trial's score depends on besides genome, data, budget and seed (kept per trial)."""
    import torch

    return f"trial {TRIAL_VERSION}, torch {torch.__version__}"


@dataclass
class TrialBudget:
    epochs: int  # train to this epoch ...
    schedule_epochs: int = 0  # ... of a learning-rate schedule this long (0: as long as `epochs`)
    max_steps_per_epoch: int = 0  # 0 = whole epochs
    seed: int = 0  # initialises the network and drives the training's randomness
    threads: int = 1  # torch threads (the trial's CPUs)
    device: str = "auto"  # auto: CUDA only when the trial has a GPU share (`fernas.device.trial_device`)
    gpus: float = 0.0  # the trial's GPU share (Ray's resource request)
    timeout: float | None = None  # seconds an epoch may take, 0 = from the trial's speed, None = no watchdog
    checkpoint: str | None = None  # the trainer's checkpoint: written each epoch, continued with `resume`
    resume: bool = False  # continue a promoted genome from `checkpoint`
    resume_from: int = 0  # the epoch its promotion starts after (the trial's own epochs follow it)
    markers: str | None = None  # folder (run storage) where a watchdog leaves why it ended a stuck worker
    marker: str | None = None  # this trial's file in it (set per trial by `run_trial`)
    alone: bool = False  # the retry of an out-of-memory trial, given a whole GPU (`shared_oom`)
    chance: float = 0.0  # the validation split's chance level: `rank_score` ties accuracies up to it
    # The trial recipe: how a fitness training differs from the genome's own recipe.  Short
    # trainings at the genome's batch with the VGG paper's augmentation mostly end at chance on
    # the demo data and rank genomes poorly for a long training; at batch 32 without
    # augmentation they rank them far better (benchmarks/trial_variants.py).
    batch: int = 0  # every trial trains at this batch size; 0 = the genome's own
    augment: str = "vgg"  # the trainer's augmentation preset (`fernas.augment.PRESETS`)
    augment_warmup: int = 0  # epochs of the trainer's augmentation warm-up (`TrainConfig.augment_warmup`)


def build_trial_model(doc: dict, seed: int, num_classes: int, device="cpu"):
    """A trial's model, initialised from `seed`.  `train_genome` then re-seeds for training, so a
    trial's fitness is reproduced by exactly `build_trial_model` + `train_genome(..., model=...)`
    (with the trial's thread settings: one torch thread in a default Ray worker)."""
    from fernas.model import build_model
    from fernas.train import seed_everything

    seed_everything(seed)
    return build_model(doc, input_size=CROP_SIZE, num_classes=num_classes).to(device)


def _fault(gid: str, alone: bool = False) -> None:
    kinds = dict(kv.split("=", 1) for kv in os.environ.get(FAULT_ENV, "").split(",") if "=" in kv)
    if kinds.get(gid) == "oom-always" or (kinds.get(gid) == "oom" and not alone):
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected, {FAULT_ENV})")
    if kinds.get(gid) == "exit":
        os._exit(1)  # a worker killed mid-trial
    if kinds.get(gid) == "raise":
        raise RuntimeError(f"injected fault ({FAULT_ENV})")
    while kinds.get(gid) == "hang":  # a trial that never ends (a deadlock, a stuck read)
        time.sleep(0.1)
    if kinds.get(gid) == "stuck":
        time.sleep(10**6)  # one call into C: the watchdog's exception waits for it in vain


def train_trial(doc: dict, data, budget: TrialBudget, report=None, gid: str = "") -> dict:
    """Train `doc` for the budget; the outcome (see `fernas.fitness.outcome_fields`).  With
    `budget.timeout` set, a `TrialWatchdog` ends a trial that stops making progress."""
    if budget.timeout is None:
        return _train_trial(doc, data, budget, report, gid, None)
    from fernas.search.watchdog import TrialWatchdog

    with TrialWatchdog(budget.timeout, marker=budget.marker) as dog:
        return _train_trial(doc, data, budget, report, gid, dog)


def _train_trial(doc: dict, data, budget: TrialBudget, report, gid: str, dog) -> dict:
    import torch

    from fernas.device import cap_gpu_memory, is_cuda_context_error
    from fernas.model import summarize
    from fernas.train import TrainConfig, TrainingDiverged, train_genome

    torch.set_num_threads(max(1, int(budget.threads)))
    t_start = time.perf_counter()
    history: list[dict] = []
    costs: dict = {}
    state = {"reporting": False, "device": ""}

    def outcome() -> dict:
        return {**outcome_fields(history, costs), "device": state["device"],
                "trial_seconds": time.perf_counter() - t_start}

    def on_epoch(rec: dict) -> None:
        history.append(dict(rec))
        if dog is not None:
            dog.beat()
        if report is not None:
            state["reporting"] = True
            report(outcome())
            state["reporting"] = False

    try:
        device = _device(budget)
        state["device"] = str(device)
        cap_gpu_memory(budget.gpus, device)
        _fault(gid, budget.alone)
        summary = summarize(doc, input_size=CROP_SIZE, num_classes=data.num_classes)
        costs.update(params=summary["params"], macs=summary["macs"])  # known before the build: a failed build reports them
        model = build_trial_model(doc, budget.seed, data.num_classes, device)
        for obj in COSTS:  # the weights do not change any cost
            costs[obj.field] = obj.measure(model, summary, device)
        cfg = TrainConfig(epochs=max(budget.schedule_epochs, budget.epochs), stop_after_epoch=budget.epochs,
                          device=device, seed=budget.seed, max_steps_per_epoch=budget.max_steps_per_epoch or None,
                          augment=budget.augment, augment_warmup=budget.augment_warmup,
                          batch_size=budget.batch or None)
        # A promotion continued from a later checkpoint than its start (a kill, an out-of-memory
        # retry): the epochs it trained before count from its first report on, as its compute.
        res = train_genome(doc, data, cfg, model=model, on_epoch=on_epoch, checkpoint_path=budget.checkpoint,
                           resume=budget.resume, on_restore=lambda restored: history.extend(
                               r for r in restored if int(r["epoch"]) > budget.resume_from))
        # The trial's epochs from the trainer's own history: a trial killed after its last
        # checkpoint resumes with nothing left to train, and its epochs are still its own.
        history[:] = [dict(r) for r in res.history if int(r["epoch"]) > budget.resume_from]
        return outcome()
    except TrainingDiverged as exc:
        return _failed(outcome(), f"diverged: {exc}")
    except TrialTimeout:
        return _failed(outcome(), dog.reason if dog is not None else "timed out")
    except torch.OutOfMemoryError as exc:
        return _failed(outcome(), f"out of memory: {str(exc).splitlines()[0]}")
    except Exception as exc:  # an invalid model, a bug in a block: penalise, keep searching
        if state["reporting"]:
            raise  # the caller's control flow (Tune stopping the trial), not the genome's fault
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            # its checkpoint could not be written (a full disk, a quota, storage gone read-only or
            # lost): not the genome's fault and not recorded; the driver ends the search (`io_error`)
            return {**_failed(outcome(), f"I/O error: {exc}"),
                    "io_error": [exc.errno, exc.strerror or str(exc), str(exc.filename or "")]}
        msg = str(exc).splitlines()[0] if str(exc) else ""
        if is_device_oom(msg):  # out of memory outside torch's allocator (cuBLAS, cuDNN, CUDA itself)
            return _failed(outcome(), f"out of memory: {msg}")
        failed = _failed(outcome(), f"{type(exc).__name__}: {msg}")
        if is_cuda_context_error(exc):
            failed["cuda_context_lost"] = True  # the process must end: every later kernel would fail
        return failed


STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)  # the storage's fault, not the genome's


def _device(budget: TrialBudget):
    """The trial's device: `auto` goes by its GPU share and the GPUs Ray gave it."""
    import torch

    from fernas.device import resolve_device, trial_device

    if budget.device != "auto":
        return resolve_device(budget.device)
    try:
        import ray

        in_worker = ray.is_initialized()
        ids = list(ray.get_gpu_ids()) if in_worker else []
    except Exception:  # Ray missing or not set up in this process
        in_worker, ids = False, []
    if not in_worker:  # a trial run by hand (benchmarks): any GPU here is its own
        return resolve_device("auto")
    return trial_device(budget.gpus, ids, torch.cuda.is_available())


DEVICE_OOM = ("cuda error: out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_device_oom(message: str) -> bool:
    """An out-of-memory error raised outside torch's caching allocator (not torch.OutOfMemoryError)."""
    text = message.lower()
    return any(e in text for e in DEVICE_OOM)


def trial_gpus(share: float, alone: bool) -> float:
    """A trial's GPU request: its share, or a whole GPU for the retry of an out-of-memory trial
    (a trial on CPU stays on CPU)."""
    return max(1.0, share) if alone and share > 0 else share


def shared_oom(outcome: dict, share: float, alone: bool) -> bool:
    """An out-of-memory failure of a trial that shared its device, retried once alone on a whole
    GPU before it counts as the genome's (`oom` in trials.csv).  Under its share's memory cap
    (`fernas.device.cap_gpu_memory`) this mostly means the genome needs more than a share; a
    neighbour's cuBLAS or cuDNN workspace can also take what it needed.  On CPU (share 0)
    torch does not raise out-of-memory; only the test hook does."""
    return (outcome.get("status") == "failed" and str(outcome.get("error") or "").startswith("out of memory")
            and share < 1 and not alone)


def _failed(outcome: dict, reason: str) -> dict:
    return {**outcome, "status": "failed", "error": reason[:500], "val_acc": 0.0, "last_val_acc": 0.0}


def with_rank_score(o: dict, chance: float) -> dict:
    """A report to Tune with `rank_score`: the last epoch's accuracy with every accuracy up to
    the chance level tied and the validation loss deciding (`fitness.ranking_accuracy`, the
    rule of fernas' own promotions).  Ray Tune's ASHA stops trials on it: on raw accuracy the
    many trials still at chance after the first epochs tie and ASHA's cut among them is
    arbitrary.  A failure (or a trial with no epoch) scores 0: ASHA cannot compare a None.  A loss
    that is not finite breaks no tie, as in fernas' promotions (`fitness.validation_loss`)."""
    acc = o.get("last_val_acc")
    if o.get("status") != "ok" or acc is None or not math.isfinite(float(acc)):
        return {**o, "rank_score": 0.0}
    return {**o, "rank_score": ranking_accuracy(float(acc), validation_loss(o), chance)}


def with_recipe(budget: TrialBudget, config: dict) -> TrialBudget:
    """The trial's budget under its recipe: a re-ranking trial with `recipe` "own" trains the
    genome's own batch size with the decode protocol's augmentation after a warm-up of `warmup`
    epochs, its schedule spanning `schedule_epochs` (`tune_adapter.own_recipe`); every other trial
    keeps the run's trial recipe."""
    if config.get("recipe") != "own":
        return budget
    from fernas.fulltrain import ProtocolConfig

    return replace(budget, batch=0, augment=ProtocolConfig.augment, augment_warmup=int(config.get("warmup", 0)),
                   schedule_epochs=int(config["schedule_epochs"]))


def run_trial(config: dict, data=None, budget: TrialBudget | None = None) -> None:
    """Ray Tune function trainable: `train_trial` with every outcome reported to Tune."""
    from ray import tune

    import ray

    alone = bool(config.get("alone"))  # an out-of-memory retry: its resource request is a whole GPU
    gpus = trial_gpus(budget.gpus, alone)
    # The Ray node the trial ran on (its id's first 12 hex digits; `ray list nodes` shows them whole)
    base = {"gid": config["gid"], "generation": config["generation"], "budget": config["budget"],
            "node": ray.get_runtime_context().get_node_id()[:12], "gpus": gpus}
    start = int(config.get("resume_from", 0))
    mine = replace(budget, epochs=config["budget"], checkpoint=config.get("checkpoint"), resume=start > 0,
                   resume_from=start, seed=budget.seed + 1000 * config.get("seed", 0), alone=alone,
                   gpus=gpus)
    mine = with_recipe(mine, config)
    if budget.markers and budget.timeout is not None:  # only a watchdog writes one
        os.makedirs(budget.markers, exist_ok=True)
        mine.marker = os.path.join(budget.markers, f"{config['gid']}-b{config['budget']}-s{config.get('seed', 0)}")
    from fernas.search.watchdog import stuck_reason

    stuck = stuck_reason(mine.marker)
    if stuck:  # Tune's retry of a trial whose worker the watchdog ended: do not hang a second time
        tune.report({**base, **with_rank_score(_failed({"val_acc": 0.0}, stuck), 0.0)})
        return
    from fernas.device import release_cuda_memory

    reported = []

    def report(o: dict) -> None:
        reported.append(1)
        tune.report({**base, **with_rank_score(o, mine.chance)})

    final = train_trial(config["genome"], data, mine, report=report, gid=config["gid"])
    lost = final.pop("cuda_context_lost", False)
    if not lost:  # the trial's frames are gone now: its model and optimizer can be freed
        release_cuda_memory()
    if lost:
        # Not the genome's fault and not to be cached: end the worker so Ray replaces it and
        # Tune retries the trial once in a fresh process (EvolveOptions.max_failures).
        print(f"fernas: CUDA context lost ({final['error']}); ending this worker", file=sys.stderr, flush=True)
        os._exit(3)
    if final["status"] != "ok" or not reported:  # a failure, or a trial with no epoch left to train
        tune.report({**base, **with_rank_score(final, mine.chance)})
