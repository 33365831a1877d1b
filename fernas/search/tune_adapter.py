"""The Ray Tune side of a search: a generational `Searcher` and a callback (`fernas.search.tuner`
runs the Tuners they drive).

`GenerationalSearcher.suggest` hands out the never-evaluated genomes of the current
generation (longest estimated job first, so the slots finish a generation together),
returns `None` while the generation is in flight and `Searcher.FINISHED` after the last
one; `on_trial_complete` passes each trial's last reported outcome to the run (which records
it in the GA's fitness cache) and, after the last member, asks the GA for the next batch.
While a successive-halving rung ends, the promotions its last trials cannot change start at
once (`fernas.evolve.fidelity.certain_promotions`) rather than after the rung.  Decisions
depend only on the seed and the fitness values, never on the order trials finish in.  A
worker that dies (after Tune's retries) reaches the searcher as an errored trial; its reason
arrives through `TrialEvents.on_trial_error`.  An error of the driver's own code inside these
callbacks is kept and raised from `suggest` (Tune would log it and go on, and the search
would wait for ever).  Once a Tuner has started `SEGMENT_TRIALS` trials, the GA's next batch (a
rung, a generation or the re-ranking) is held for a new Tuner (`next_tuner`) and this one finishes.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from ray import tune
from ray.tune.search import Searcher

from fernas.evolve import Candidate
from fernas.evolve.config import RERANKING
from fernas.io import atomic_write_json
from fernas.objectives import FIELDS
from fernas.search.trial import shared_oom

# What the run keeps of a trial's last report (the rest is Tune's bookkeeping).
OUTCOME_KEYS = ("status", "error", *FIELDS, "val_loss", "train_seconds", "epoch", "device", "node", "gpus",
                "images", "compute")
# What a trial whose worker died is recorded as having spent: the running totals of its last
# report (Tune's `last_result`: of the last attempt that reported; the training of an attempt that
# died before reporting, and of any earlier attempt, is not in them).
SPENT_KEYS = ("images", "compute", "train_seconds")
ERROR_WAIT_S = 2.0  # how long an errored trial waits for its reason before a generic one
# Trials one Tuner starts before the GA's next batch goes to a new one (why: `fernas.search.tuner`)
SEGMENT_TRIALS = 250


class GenerationalSearcher(Searcher):
    """Hands out one GA generation at a time; feeds outcomes back through the run."""

    def __init__(self, run, gpus_per_trial: float = 0.0):
        super().__init__(metric="val_acc", mode="max")
        self.run = run  # fernas.search.run.EvolveRun
        self.gpus_per_trial = gpus_per_trial
        self.queue: deque[Candidate] = deque()
        self.live: dict[str, tuple[Candidate, float]] = {}  # trial_id -> (candidate, start time)
        self.waiting_alone: set[str] = set()  # out-of-memory retries not started yet (they need a whole GPU)
        self.errored: dict[str, float] = {}  # trial_id -> time Tune reported the error
        self.finished = False
        self.failure: Exception | None = None  # the first error of our own code in a Tune callback (_kept)
        self.started_here = 0  # trials the current Tuner started (SEGMENT_TRIALS)
        self.held: list[Candidate] | None = None  # the GA's next batch, kept for the next Tuner
        self._load(run.ev.next_batch())

    def _load(self, batch: list[Candidate] | None) -> None:
        while batch is not None:
            runnable = [c for c in batch if not self.run.refuse(c)]  # refused ones are recorded
            if runnable:
                self.queue.extend(sorted(runnable, key=lambda c: -c.cost_hint))
                first = runnable[0]
                self.run.console.trials_queued(RERANKING if first.kind == "rerank" else first.generation, len(runnable),
                                               highest_accuracy(self.run.ev))
                return
            batch = self.run.ev.next_batch()
        self.finished = True

    @contextlib.contextmanager
    def _kept(self):
        """Tune logs an exception raised in `on_trial_complete` and goes on with the GA half
        updated (its generator dead: the search would wait for ever).  Keep the first, for
        `suggest` and `fit` to raise: the search ends with it (an OSError in one line)."""
        try:
            yield
        except Exception as exc:
            if self.failure is None:
                self.failure = exc

    def suggest(self, trial_id: str):
        self._flush_errors()
        if self.failure is not None:
            raise self.failure
        if self.run.console.output.closed:  # `| head` ended: start nothing; Tune ends once the running trials do
            return Searcher.FINISHED
        if self.queue and not self.run.ev.search_over and self._waiting() and self.run.out_of_budget(len(self.live)):
            self.run.ev.end_search(self.run.stop_reason, self._running())
            self._search_ended()
        if self.queue and not self.waiting_alone:  # a retry alone waits for its card to empty
            cand = self.queue.popleft()
            self.live[trial_id] = (cand, time.perf_counter())
            self.started_here += 1
            alone = ran_out_of_memory(self.run.ev.cache, cand)
            if alone:
                self.waiting_alone.add(trial_id)
            self.run.console.trial_started()
            return {"genome": cand.doc, "gid": cand.gid, "generation": cand.generation, "budget": cand.budget,
                    "resume_from": cand.resume_from, "seed": cand.seed, "checkpoint": self.run.checkpoint_path(cand),
                    "alone": alone, **own_recipe(cand, self.run.ev.cfg)}
        if self.queue:
            return None
        return Searcher.FINISHED if self.finished or self.held is not None else None

    def _next_batch(self) -> None:
        """Nothing runs or waits: the GA's next batch, kept for the next Tuner (`next_tuner`)
        once this one has started `SEGMENT_TRIALS` trials (this one then finishes)."""
        batch = self.run.ev.next_batch()
        if batch is not None and self.started_here >= SEGMENT_TRIALS:
            self.held = batch
        else:
            self._load(batch)

    def next_tuner(self) -> bool:
        """For a new Tuner: the batch held for it queued; False when none was held."""
        if self.held is None:
            return False
        batch, self.held, self.started_here = self.held, None, 0
        self._load(batch)  # every genome refused and the GA done: nothing to start a Tuner for
        return bool(self.queue)

    def _running(self) -> list[Candidate]:
        """The search's trials a budget's end lets finish: those running, and those queued that
        count as in flight (`_in_flight`)."""
        return [c for c, _ in self.live.values()] + [c for c in self.queue if self._in_flight(c)]

    def _in_flight(self, cand: Candidate) -> bool:
        """A queued trial that ran within the budget: an out-of-memory retry (its first try did),
        or one a kill lost that was running when the budget was spent (`Evolution.note_spent`)."""
        return ran_out_of_memory(self.run.ev.cache, cand) or self.run.ev.ran_when_spent(cand)

    def _waiting(self) -> bool:
        """Whether a queued trial would be a new one (not in flight): a spent budget refuses it."""
        return any(not self._in_flight(c) for c in self.queue)

    def _search_ended(self) -> None:
        """A budget ended the search (`Evolution.end_search`): no further trial of it starts; those
        running and waiting retries finish and are recorded, then the re-ranking runs (the GA's
        next batch once they are in)."""
        ev = self.run.ev
        self.queue = deque(c for c in self.queue if self._in_flight(c))
        self.run.console.search_ended(ev, len(self.live) + len(self.queue))
        if not self.live and not self.queue:
            self._next_batch()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if error:
            self.errored[trial_id] = time.perf_counter()  # the reason (and last report) follow in on_trial_error
            return
        result = result or {}
        outcome = {k: result.get(k) for k in OUTCOME_KEYS}
        if result.get("io_error"):  # the trial's files could not be written (`_complete` ends the search)
            outcome["io_error"] = result["io_error"]
        outcome["status"] = outcome["status"] or "failed"
        if not result:
            outcome.update(status="failed", error="the trial reported nothing")
        elif outcome["status"] == "ok" and int(result.get("epoch") or 0) < self.live[trial_id][0].budget:
            outcome["status"] = "stopped"  # ended early by ASHA
        with self._kept():
            self._complete(trial_id, outcome)

    def trial_failed(self, trial_id: str, reason: str, last_result: dict | None = None) -> None:
        """A trial whose worker died: failed, with the training its last attempt reported
        (`last_result`, Tune's last report of it) counted as spent."""
        if trial_id in self.live:
            spent = {k: (last_result or {}).get(k) or 0 for k in SPENT_KEYS}
            with self._kept():
                self._complete(trial_id, {"status": "failed", "error": reason, "val_acc": 0.0, **spent})
        self.errored.pop(trial_id, None)

    def _flush_errors(self) -> None:
        now = time.perf_counter()
        for tid, t in list(self.errored.items()):
            if now - t > ERROR_WAIT_S:
                self.trial_failed(tid, "trial worker failed (no reason reported)")

    def started(self, trial_id: str) -> None:
        self.waiting_alone.discard(trial_id)

    def _complete(self, trial_id: str, outcome: dict) -> None:
        if outcome.get("io_error"):  # a full disk is not the genome's fault: end the search, unrecorded
            code, text, path = outcome["io_error"]
            raise OSError(code, f"{text} (trial {self._name(self.live[trial_id][0], trial_id)})", path or None)
        cand, t0 = self.live.pop(trial_id)
        self.errored.pop(trial_id, None)
        self.waiting_alone.discard(trial_id)
        outcome.update(wall_seconds=time.perf_counter() - t0, trial_id=trial_id,
                       log_dir=self.run.trial_dirs.get(trial_id, ""))
        if shared_oom(outcome, self.gpus_per_trial, ran_out_of_memory(self.run.ev.cache, cand)):
            # recorded (its compute was spent) but not the genome's outcome: the same trial again, alone
            where = " on a whole GPU" if self.gpus_per_trial > 0 else ""
            outcome["error"] = f"{outcome['error']} (sharing its device: retried alone{where})"[:500]
            if cand.resume_from:  # the retry continues the checkpoint of its finished epochs and counts them
                outcome.update(images=0, compute=0, train_seconds=0.0)
            self.run.record(replace(cand, kind="oom"), {**outcome, "oom_of": cand.kind})  # of the search or the re-ranking
            self.run.console.trial_finished(self._name(cand, trial_id), outcome, False)
            self.queue.appendleft(cand)
            return
        ended = self.run.record(cand, outcome, running=self._running(), waiting=self._waiting())
        at_max = cand.budget == self.run.ev.cfg.max_budget and cand.kind != "rerank"  # as `highest_accuracy`
        self.run.console.trial_finished(self._name(cand, trial_id), outcome, at_max)
        if ended:
            self._search_ended()
        elif not self.live and not self.queue and not self.finished:
            self._next_batch()
        elif not self.queue:
            self._queue_certain()

    @staticmethod
    def _name(cand: Candidate, trial_id: str) -> str:
        return short_name(cand.generation, cand.gid, cand.budget, cand.seed, trial_id)

    def _queue_certain(self) -> None:
        """A slot would idle until the rung's last trials end: start the promotions they cannot change."""
        flying = {(c.gid, c.budget) for c, _ in self.live.values()}
        early = [c for c in self.run.ev.certain_promotions() if (c.gid, c.budget) not in flying]
        early = [c for c in early if not self.run.refuse(c)]  # sets cost_hint (a promotion is never refused)
        if early:
            self.queue.extend(sorted(early, key=lambda c: -c.cost_hint))
            self.run.console.trials_queued(early[0].generation, len(early), highest_accuracy(self.run.ev))

    def save(self, checkpoint_path: str) -> None:
        # Tune's own experiment checkpoint: the GA state lives in the run's checkpoint.json.
        atomic_write_json(checkpoint_path, {"fernas_checkpoint": str(self.run.rundir.checkpoint)})

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume with `fernas evolve --out DIR --resume`")

    # Tune pickles the searcher into its experiment state; ours lives in checkpoint.json
    # (the GA's generator cannot be pickled), so a pickled copy only says where.
    def __getstate__(self):
        return {"checkpoint": str(self.run.rundir.checkpoint)}

    def __setstate__(self, state):
        self.__dict__.update(state)


def highest_accuracy(ev) -> float | None:
    """The highest validation accuracy a search trial reached at the largest budget so far (the
    live progress line's "highest"; the generation line's "best" is the fittest genome's)."""
    accs = [float(t["val_acc"]) for e in ev.cache.values() for t in e.get("trials", [])
            if t.get("budget") == ev.cfg.max_budget and t.get("status") == "ok" and t.get("kind") != "rerank"
            and t.get("val_acc") is not None]
    return max(accs, default=None)


def ran_out_of_memory(cache: dict, cand: Candidate) -> bool:
    """The candidate's trial ran out of memory beside others before (a kill since does not
    matter): this one is the retry alone.  From the cache, so a resume decides the same."""
    return any(t.get("kind") == "oom" and t.get("budget") == cand.budget and t.get("seed") == cand.seed
               for t in cache.get(cand.gid, {}).get("trials", []))


def short_name(generation, gid, budget, seed, trial_id: str) -> str:
    """A trial's short name: generation, genome id, budget and seed, Tune's id."""
    return f"gen{generation}_{gid}_b{budget}{f'_seed{seed}' if seed else ''}_{trial_id}"


def trial_name(trial) -> str:
    """A trial's name and directory (Tune's default spells out the whole genome)."""
    c = trial.config
    return short_name(c.get("generation"), c.get("gid"), c.get("budget"), c.get("seed"), trial.trial_id)


def _error_line(trial) -> str:
    """The line of a failed trial's error that names the cause."""
    text = ""
    with contextlib.suppress(Exception):  # the local error file is written before the callback; storage may lag
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
        elif trial.get_error() is not None:
            text = str(trial.get_error())
    if "running low on memory" in text:
        return memory_monitor_reason(text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Ray's traces name the cause ("The actor died unexpectedly ...", "...Error: ..."); keep that line.
    return next((ln for ln in lines if "died" in ln), None) or next(
        (ln for ln in reversed(lines) if "Error" in ln), None) or "the worker process died"


def memory_monitor_reason(text: str) -> str:
    """The reason of a worker Ray's memory monitor killed, with the node's memory from its report."""
    m = re.search(r"was ([\d.]+\s*[KMGT]?B) used / ([\d.]+\s*[KMGT]?B) limit", text)
    use = f" ({m.group(1)} of {m.group(2)} in use)" if m else ""
    return (f"killed by Ray's memory monitor: the node ran low on memory{use}; run fewer trials at once "
            "(--cpus-per-trial) or cap the networks lower (--max-mmacs)")


class TrialEvents(tune.Callback):
    """Tells the searcher why a trial errored, and the run where each trial logs."""

    def __init__(self, searcher: GenerationalSearcher):
        self.searcher = searcher
        self.sigint_handler = None  # Tune's, seen at its first step (`fired`)
        self.stopped = False  # Tune's Ctrl-C handler fired during its run (`_own_ctrl_c`)

    def __getstate__(self):
        return {}

    def on_step_begin(self, iteration, trials, **info):
        if self.sigint_handler is None and threading.current_thread() is threading.main_thread():
            self.sigint_handler = signal.getsignal(signal.SIGINT)

    def fired(self, handler) -> bool:
        """Whether Tune's Ctrl-C handler fired, from the SIGINT `handler` in place after its run
        (Tune's handler puts the one before it back when it fires; a SIGTERM or SIGHUP calls it
        too, `fernas.stop_signals`)."""
        return self.sigint_handler is not None and handler is not self.sigint_handler

    def on_trial_start(self, iteration, trials, trial, **info):
        self.searcher.run.trial_dirs[trial.trial_id] = str(trial.path or "")
        self.searcher.started(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        self.searcher.run.tick()

    def on_trial_error(self, iteration, trials, trial, **info):
        n = self.searcher.run.opts.max_failures
        reason = f"worker failed after {n} retr{'y' if n == 1 else 'ies'}: {_error_line(trial)}"
        last = None
        with contextlib.suppress(Exception):  # a property that may ask Ray; the compute is then unknown
            last = trial.last_result
        self.searcher.trial_failed(trial.trial_id, reason[:500], last)


def own_recipe(cand, ga) -> dict:
    """The settings that make a re-ranking trial train the genome's own recipe
    (`GAConfig.rerank_recipe` "own"; `trial.with_recipe` applies them); none for other trials."""
    if ga.trains_own_recipe(cand):
        return {"recipe": "own", "schedule_epochs": ga.rerank_schedule, "warmup": ga.rerank_warmup}
    return {}
