"""Progress inside a generation of `fernas evolve`, on stderr (`TrialProgress`).

Trials done / running / failed of the generation's trials so far (promotions join the total
when their rung opens), the highest validation accuracy of a trial at the largest budget so far and an ETA from the trials'
own pace: the mean wall time of the generation's finished trials, divided by the trials
running at once, times the trials left.  On a terminal a tqdm bar is updated in place; when
stderr is not a terminal (a log file, a batch job) a plain line is written every
`PLAIN_EVERY_S` seconds instead.  A failed trial gets one line with its reason as it ends.
"""

from __future__ import annotations

import sys
import time

from fernas.evolve.config import RERANKING

PLAIN_EVERY_S = 30.0  # a log file gets a line this often, not one per trial


class TrialProgress:
    """The live view of one generation's trials; `quiet` shows nothing at all."""

    def __init__(self, stream=None, quiet: bool = False, tty: bool | None = None, every_s: float = PLAIN_EVERY_S):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s = every_s
        self.bar = None
        self.gen = None
        # the highest validation accuracy of a trial at the largest budget so far: not the
        # generation line's "best" (the fittest genome's, which ties at chance can put lower)
        self.best: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.total = self.done = self.running = self.failed = 0
        self.peak_running = 1
        self.trial_seconds: list[float] = []
        self.t0 = self.last_line = time.time()

    # -- events (from the run)
    def queued(self, gen: int, n: int, best: float | None) -> None:
        """`n` trials of generation `gen` (0-based; `RERANKING`: of the re-ranking) were queued;
        `best`: the run's best so far."""
        if gen != self.gen:
            self.close()
            self.gen = gen
            self._reset()
        if best is not None:
            self.best = best if self.best is None else max(self.best, best)
        self.total += n
        self._show()

    def started(self) -> None:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        self._show()

    def finished(self, name: str, outcome: dict, at_max_budget: bool) -> None:
        """One trial ended (`outcome` as recorded: status, val_acc, error, wall_seconds)."""
        self.running = max(0, self.running - 1)
        self.done += 1
        status = outcome.get("status")
        if status not in ("ok", "stopped", "skipped"):
            self.failed += 1
            self._say(f"trial {name} failed: {outcome.get('error') or 'no reason reported'}")
        elif status != "skipped":
            self.trial_seconds.append(float(outcome.get("wall_seconds") or 0.0))
            acc = outcome.get("val_acc")
            if at_max_budget and status == "ok" and acc is not None:
                self.best = float(acc) if self.best is None else max(self.best, float(acc))
        self._show()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # -- output
    def eta_seconds(self) -> float | None:
        """Seconds until the generation's queued trials end, from the pace of its finished ones."""
        if not self.trial_seconds:
            return None
        mean = sum(self.trial_seconds) / len(self.trial_seconds)
        left = self.total - self.done
        return mean * left / max(1, self.peak_running)

    def summary(self) -> str:
        from fernas.runinfo import fmt_duration

        eta = self.eta_seconds()
        best = "-" if self.best is None else f"{self.best:.4f}"
        return (f"{self._label()}: trials {self.done}/{self.total} done, {self.running} running, "
                f"{self.failed} failed  highest {best}  ETA {'?' if eta is None else fmt_duration(eta)}")

    def _label(self) -> str:
        return "re-ranking" if self.gen == RERANKING else f"gen {self.gen}"

    def _show(self) -> None:
        if self.quiet or self.gen is None:
            return
        if self.tty:
            self._bar_update()
        elif time.time() - self.last_line >= self.every_s:
            self.last_line = time.time()
            print(self.summary(), file=self.stream, flush=True)

    def _bar_update(self) -> None:
        from fernas.runinfo import fmt_duration

        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self._label(), file=self.stream, leave=False,
                            unit="trial", dynamic_ncols=True, bar_format="{desc}: {n}/{total} {bar} {postfix}")
        self.bar.total = self.total
        self.bar.n = self.done
        eta = self.eta_seconds()
        self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}, highest "
                                 f"{'-' if self.best is None else f'{self.best:.4f}'}, ETA "
                                 f"{'?' if eta is None else fmt_duration(eta)}", refresh=True)

    def _say(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)
