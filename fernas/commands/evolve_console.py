"""What `fernas evolve` prints while a run goes on (`EvolveConsole`): one line per event.

`fernas.search.run_evolve` reports through these methods and prints nothing itself, so the
wording users read lives here, next to the command's flags.
"""

from __future__ import annotations

import errno
import shlex
import sys
from pathlib import Path

from fernas.protocol import AUGMENT_WARMUP
from fernas.search import next_steps
from fernas.search.options import recipe_text


def nth(gen: int, generations: int) -> str:
    """Generation `gen` as the run's files number it (from 0), and which of how many it is:
    "2 (3/5)"."""
    return f"{gen} ({gen + 1}/{generations})"


class EvolveConsole:
    """What `fernas evolve` prints while a run goes on: one line per event on stdout, and the
    progress inside a generation on stderr (none with `quiet`)."""

    def __init__(self, stream=None, quiet: bool = False, progress_stream=None):
        from fernas.commands.closed_output import OutputWatch
        from fernas.commands.trial_progress import TrialProgress

        self.output = OutputWatch(on_closed=self._output_closed)  # `| head`: the search stops, never hangs
        self.stream = self.output.guard(stream or sys.stdout)  # the real one, also while Tune's own output is silenced
        self.progress = TrialProgress(self.output.guard(progress_stream or sys.stderr), quiet=quiet)
        self.started = False  # whether Ray is up and the trials' lines begin (`starting`)
        self.flag_settings: dict[str, list[str]] = {}  # a resume's given flags -> the settings they set
        self.go_on = ""  # the command that continues the run (`fernas.commands.evolve.run` sets it)
        self.left_out_seeds: list[tuple[dict, str]] = []  # named when the run starts: bad input stays one line

    def say(self, text: str, err: bool = False) -> None:
        self.progress.close()  # a bar in place would be torn by the line
        print(text, file=self.output.guard(sys.stderr) if err else self.stream, flush=True)

    def _output_closed(self, name: str) -> None:
        if not self.started:
            self.say(f"fernas evolve: {name} was closed (broken pipe) before the search started: no trial was "
                     "trained", err=True)
            return
        self.say(f"fernas evolve: {name} was closed (broken pipe): no further trial is handed out; the run stops "
                 "when the trials under way end", err=True)

    def reader_gone(self) -> bool:
        """Whether stdout or stderr lost its reader (said once, on stderr); asked before Ray
        starts, where no line may have been written yet (`fernas evolve ... | true`)."""
        from fernas.commands.closed_output import closed_pipes

        for stream in closed_pipes(self.stream, sys.stderr) if self.output.closed is None else []:
            self.output.lost(stream, BrokenPipeError(errno.EPIPE, "Broken pipe"))
        return self.output.closed is not None

    def resuming(self, out, ev, given, kept) -> None:
        """`given`: the options of this command line; `kept`: the run's own, which it resumes with."""
        from fernas.search.options import flags_not_taken
        from fernas.search.run import trial_count

        gen = min(ev.gen, ev.cfg.generations - 1)  # a finished run's counter stands past its last generation
        n = trial_count(ev)
        self.say(f"resuming {out}: generation {nth(gen, ev.cfg.generations)}, {n} trial{'' if n == 1 else 's'} already "
                 "done (not repeated)")
        unused = flags_not_taken(self.flag_settings, given, kept)
        if unused:
            self.say(f"fernas evolve: the run keeps the settings it started with (its config.json): "
                     f"{', '.join(unused)} of this command line not used", err=True)

    def run_line(self, out, ga, opts) -> None:
        """What the run searches: its strategy, size, objectives, budgets and trial recipe."""
        strategy = "random search, " if ga.strategy == "random" else ""
        budgets = (f"{ga.rungs[0]} epoch(s) per trial" if len(ga.rungs) == 1 else
                   f"budgets {','.join(map(str, ga.rungs))} epochs, eta {ga.eta}")
        recipe = recipe_text(opts.trial_batch, opts.trial_augment)
        self.say(f"fernas evolve: {out}  ({strategy}pop {ga.pop}, {ga.generations} generation{'s' if ga.generations != 1 else ''}, objectives "
                 f"{','.join(ga.objectives)}, {budgets}; trials at {recipe})")

    def starting(self, out, ga, opts, res: dict, trial_logs: str) -> None:
        self.started = True
        for doc, reason in self.left_out_seeds:
            self.left_out(doc, reason)
        self.run_line(out, ga, opts)
        where = "local instance" if res["started_local"] else "cluster " + res["address"]
        self.say(f"Ray: {where}, {res['cpus']:g} CPU(s), {res['gpus']:g} GPU(s); {res['concurrent_trials']} "
                 f"trial(s) at a time, {res['cpus_per_trial']:g} CPU + {res['gpus_per_trial']:g} GPU each")
        if res["dashboard_url"]:
            self.say(f"Ray dashboard: {res['dashboard_url']}  (log in with the token in "
                     f"{res['token_file']}; `ray get-auth-token` prints it)")
        self.say(f"Trial logs: {trial_logs}")

    def generation(self, rec: dict, generations: int, elapsed: float, eta: float, compute: int) -> None:
        from fernas.runinfo import fmt_duration

        def acc(v):
            return "     -" if v is None else f"{v:.4f}"

        self.say(f"gen {rec['gen']:>3} ({rec['gen'] + 1}/{generations})  best {acc(rec['best'])}  mean {acc(rec['mean'])}  "
                 f"evals {rec['evals']:>3}  cache hits {rec['cache_hits']:>3}  failures {rec['failures']:>2}  "
                 + (f"too large {rec['skipped']:>2}  " if rec.get("skipped") else "")
                 + f"trials {rec['trials']:>3}  compute so far {compute:.3g} img*MAC  "
                 f"elapsed {fmt_duration(elapsed)}  ETA {fmt_duration(eta)}")

    def no_signal(self, gen: int, n: int, of: int, budget: int, level: float, halving: bool,
                  recipe_hint: str = "") -> None:
        """`recipe_hint`: the trial-recipe flags to suggest (where the run's differ from the default)."""
        then = ("promotions and selection ranked them by validation loss alone" if halving
                else "selection ranked them by validation loss alone")
        recipe = f"the trial recipe {recipe_hint}, " if recipe_hint else ""
        self.say(f"gen {gen:>3}: {n} of {of} new genomes ended at chance after {budget} epoch(s) (validation "
                 f"accuracy <= {level:.3f}, the largest class's share + 1 s.e.): {then}; these would carry signal: "
                 f"{recipe}a larger {'--min-budget' if halving else '--epochs-per-trial'}, or more training images")

    def trials_queued(self, gen: int, n: int, best: float | None) -> None:
        self.progress.queued(gen, n, best)

    def trial_started(self) -> None:
        self.progress.started()

    def trial_finished(self, name: str, outcome: dict, at_max_budget: bool) -> None:
        self.progress.finished(name, outcome, at_max_budget)

    def left_out(self, doc: dict, reason: str) -> None:
        self.say(f"seed design {doc.get('name') or '?'} left out: {reason}")

    def warm_start(self, source, n_hof: int, n_head: int, n_reused: int) -> None:
        why = "" if n_head == n_hof else " (the rest: outside this run's space or caps, the same network, or past --pop)"
        self.say(f"warm start from {source}: {n_head} of its {n_hof} hall-of-fame genomes head the initial "
                 f"population{why}; {n_reused} genomes it trained are not trained again")

    def reopened(self, ev) -> None:
        self.say(f"evolution goes on: --patience {ev.cfg.patience} allows more generations")

    def slow_on_cpus(self, slow: list[tuple[str, float]]) -> None:
        if not slow:
            return
        names = ", ".join(f"{n} ({m:.0f}M multiply-adds per image)" for n, m in slow)
        self.say(f"note: the trials train on CPUs, and generation 0 trains the seed designs {names}: minutes to "
                 "hours an epoch on a few cores; --max-mmacs 60 leaves them out (make demo's cap)", err=True)

    def new_tuner(self, path: str, after: int) -> None:
        self.say(f"Trial logs from here on: {path} (a new Ray Tune experiment after each {after} trials)")

    def search_ended(self, ev, running: int) -> None:
        end = ev.meta["search_end"]
        then = f"the {running} trial(s) running finish, then " if running else ""
        rerank = "the re-ranking of the best genomes runs" if ev.cfg.rerank_top else "the outputs are written"
        self.say(f"search ended in generation {nth(end['generation'], ev.cfg.generations)}: "
                 f"{_budget_flag(ev.meta['ended_by'])} {end['why']}; {then}{rerank}")

    def search_reopened(self, ev) -> None:
        self.say(f"the search goes on: the budget that ended it is raised (generation {nth(ev.gen, ev.cfg.generations)} "
                 "replays from its start; nothing trained is trained again)")

    def already_complete(self, ev) -> None:
        end = ev.meta.get("search_end")
        self.say("the run is already complete" if end is None else
                 f"the run is already complete: {_budget_flag(ev.meta['ended_by'])} {end['why']} "
                 "(raise it to go on searching)")

    def stopped(self, out, ev) -> None:
        where = ("after its search ended, before the re-ranking of its best genomes finished" if ev.search_over else
                 f"in generation {ev.gen} ({ev.gen + 1}/{ev.cfg.generations}; {ev.gen} finished)")  # `fernas runs` counts finished
        self.say(f"fernas evolve: stopped {where}; nothing done is lost: continue with  "
                 f"{self.go_on or next_steps.continue_command(out)}", err=True)

    def finished(self, out, ev) -> None:
        if ev.meta.get("ended_by") == "patience":  # why it ended, then what it found
            self.say(f"evolution ended after generation {nth(ev.gen - 1, ev.cfg.generations)}: no better best for "
                     f"{ev.cfg.patience} generation{'s' if ev.cfg.patience != 1 else ''} (--patience)")
        if ev.ended_by_budget:
            end, flag = ev.meta["search_end"], _budget_flag(ev.meta["ended_by"])
            self.say(f"the search ended in generation {nth(end['generation'], ev.cfg.generations)}: {flag} "
                     f"{end['why']}; go on with a larger budget:  fernas evolve --out {shlex.quote(str(out))} "
                     f"--resume {flag} ...")
        best = ev.best()
        if best is not None:
            e = ev.cache.get(best.gid, {})
            self.say(f"best genome {best.gid}: validation accuracy {e.get('val_acc') or 0:.4f} after "
                     f"{e.get('budget')} epoch(s){_reranking_note(ev.cfg, e)}{_tie_note(ev, best.gid)}, "
                     f"{e.get('params') or 0:,} parameters, "
                     f"{(e.get('macs') or 0) / 1e6:.1f}M multiply-adds")
        from fernas.search.run import run_trials, total_compute, trial_count

        trials = run_trials(ev)
        seconds = sum(float(t.get("train_seconds") or 0) for t in trials)
        rerank = total_compute(ev) - total_compute(ev, search_only=True)
        n = trial_count(ev)  # as the budgets and the resume line count (refused genomes apart)
        refused = f" ({len(trials) - n} genomes refused untrained)" if len(trials) > n else ""
        self.say(f"training compute: {n} trials{refused}, {total_compute(ev):.3g} images x multiply-adds"
                 + (f" ({rerank:.3g} of them re-ranking)" if rerank else "") + f", {seconds:.0f} s of training")
        from fernas.run_analysis import utilisation

        use = utilisation(trials, ev.meta.get("slots") or {})
        if use:
            self.say(f"trial slots busy {use['busy']:.0%} of the run, training {use['training']:.0%} "
                     "(the rest: Ray starting trials, loading data, waiting at rung and generation ends)")
        self.say(f"results: {out}/trials.csv, logbook.csv, pareto.csv; plots: {out}/progress.png, {out}/pareto.png")
        self.say(f"report: {out}/report.html (open it in a browser)")
        self.say(f"best genomes: {out}/hall_of_fame/*.json; train the best by the VGG paper's protocol (300+50 "
                 f"epochs on ten crops: hours on a GPU): {next_steps.train_best_command(out)}")
        race = next_steps.race_command(out, ev.cfg.rerank_schedule)
        if race:
            self.say(f"or race the top three (each trains {AUGMENT_WARMUP} epochs, the best trains on: README, "
                     f"\"Racing the finalists\"): {race}")
        self._seed_designs(out, best.gid if best is not None else None, ev.cfg.rerank_schedule)

    def _seed_designs(self, out, best_gid: str | None, epochs: int) -> None:
        """The best seed design of the run, and how to train the best beside the seed designs
        (`next_steps.compare_command`)."""
        evolved = [d["evolve"] for d in next_steps.seed_design_docs(out)]
        if not evolved:
            return
        mine = [e for e in evolved if e.get("gid") == best_gid]  # the best genome may be a seed design
        top = mine[0] if mine else max(evolved, key=lambda e: (e.get("fitness") or [0.0])[0])
        self.say(f"seed designs trained: {len(evolved)} in {shlex.quote(str(out))}/seed_designs/; the best, "
                 f"{top['name']}: validation accuracy {top.get('val_acc') or 0:.4f} after {top.get('budget')} epoch(s)"
                 + ("; it is the best genome: no new genome beat it" if mine else ""))
        compare = next_steps.compare_command(out, best_gid, epochs)
        if compare:
            self.say(f"compare them at the length you will train (short trials favour fast learners): {compare}")


def _budget_flag(setting: str) -> str:
    """The flag of a budget setting: max_compute -> --max-compute."""
    return "--" + setting.replace("_", "-")


def _reranking_note(cfg, entry: dict) -> str:
    """What ordered the best genome, for its line: its re-ranking (recipe, length, mean), or why
    it has none although it was chosen for one (a training refused, e.g. over host memory)."""
    from fernas.search.rundir import reranking

    rr = reranking(cfg, entry).get("rerank")
    if rr:
        return (f" (re-ranked: {rr['recipe']} recipe, {rr['epochs']} epochs, mean {rr['mean_val_acc']:.4f} "
                f"over {rr['trainings']} training(s))")
    why = [t["error"] for t in entry.get("trials", []) if t.get("kind") == "rerank" and t.get("error")]
    return f" (not re-ranked: {why[0]})" if why else ""


def _tie_note(ev, gid: str) -> str:
    """Why the best genome is first although another re-ranked genome has a higher mean: their
    means tied within one standard error (fitness.rerank_order), and the search's fitness decided."""
    from fernas.fitness import reranked_accuracy, reranked_score

    cfg, top = ev.cfg, len(ev.cfg.rungs) - 1
    # by the score that orders (at chance: the loss), shown as the mean accuracy
    scores = {i.gid: reranked_score(ev.cache.get(i.gid, {}), top, cfg.chance_level, cfg.rerank_with_own)
              for i in ev.hall_of_fame()}
    higher = max(((s, g) for g, s in scores.items() if s is not None), default=None)
    if higher is None or scores.get(gid) is None or higher[0] <= scores[gid]:
        return ""
    mean = reranked_accuracy(ev.cache[higher[1]], top, cfg.rerank_with_own)
    return f" (tied within one standard error with {higher[1]}'s mean {mean:.4f}: the search's accuracy decided)"
