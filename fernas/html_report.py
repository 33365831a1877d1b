"""`report.html` of a run: one self-contained page (pictures embedded, no network) to open in a browser.

An evolve run's page: what ran and how far, the resolved configuration, progress, Pareto
and best-so-far-against-compute plots, the hall of fame with each genome's layer table and
recipe, the seed designs the run trained (to compare the best with), how the validation
accuracy varies with each property of the genomes and which properties go with first trainings
that ended at chance (`fernas.run_analysis`), and every trial in a table sorted by a click on a
column.  A training run's page: its test figures, curves, confusion matrix, per-class F1,
saliency maps, the network and the history.  `write_report(run_dir)` picks the page by the run's
config.json and writes `RUN/report.html` atomically.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import sys
import time
from pathlib import Path

from fernas import __version__
from fernas.errors import RunDirError, first_line
from fernas.io import atomic_write_text, json_type
from fernas.search import next_steps
from fernas.search.options import recipe_text, stored_recipe

REPORT_NAME = "report.html"
TRIAL_COLUMNS = ("trial", "generation", "gid", "origin", "kind", "budget", "status", "val_acc", "val_loss",
                 "params", "macs", "compute", "train_seconds", "device", "node", "error")
TEXT_COLUMNS = ("gid", "origin", "kind", "status", "device", "node", "error")  # sorted as text, shown as they are

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4ecf7}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}.figs{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}
.figs img{max-width:49%}
.kv td{text-align:left}.kv td:first-child{color:#555}.kv thead{display:none}.note{color:#555;font-size:.9em;max-width:60em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:30em}
.scroll{max-height:40em;overflow:auto}
"""

# Sort a table by the clicked column (numbers as numbers; a second click reverses); a link
# ending in #sort=COLUMN opens with the trials sorted by it, largest first.  The page marks
# itself rendered when its script has run.
SCRIPT = """
function sortTable(th,asc){const table=th.closest('table'),body=table.tBodies[0],i=th.cellIndex;
if(asc===undefined)asc=th.dataset.order!=='asc';th.dataset.order=asc?'asc':'desc';
const key=r=>{const t=r.cells[i].textContent.trim(),n=parseFloat(t.replace(/,/g,''));
return isNaN(n)||!/^[-+0-9.,e]+$/i.test(t)?t:n};
const rows=Array.from(body.rows);rows.sort((a,b)=>{const x=key(a),y=key(b);
const c=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==='number'?-1:1);return asc?c:-c});
rows.forEach(r=>body.appendChild(r));}
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>sortTable(th)));
const m=location.hash.match(/^#sort=(\\w+)$/);
if(m){const th=Array.from(document.querySelectorAll('#trials th')).find(h=>h.textContent===m[1]);
if(th)sortTable(th,false);}
document.body.dataset.rendered='ok';
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def fmt(value, digits: int = 4) -> str:
    """A table cell: integers with thousands separators, fractions to `digits` places, large
    floats in short scientific form, '-' for nothing."""
    if value in (None, ""):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        return f"{int(value):,}"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{f:.{digits}g}" if abs(f) >= 1e6 or 0 < abs(f) < 1e-3 else f"{f:.{digits}f}"


def table(headers, rows, sortable: bool = False, text_cols: tuple = (), cls: str = "") -> str:
    """An HTML table; `text_cols`: indexes of left-aligned (text) columns."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    head = "".join(f"<th{' class=t' if i in text_cols else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=t' if i in text_cols else ''}>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table class='{classes}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(png: bytes | None, alt: str) -> str:
    if not png:
        return f"<p class=note>({esc(alt)}: not written yet)</p>"
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def image_file(path: Path, alt: str) -> str:
    return image(path.read_bytes() if path.is_file() else None, alt)


def section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{esc(title)}</h2>{body}</section>"


def key_values(pairs) -> str:
    return table(("", ""), [(k, v) for k, v in pairs], cls="kv")


def page(title: str, sections: list[str]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(sections)}"
            f"<p class=note>written by fernas {esc(__version__)} at {when}</p>"
            f"<script>{SCRIPT}</script></body></html>")


def genome_block(doc: dict, num_classes: int = 7) -> str:
    """A genome's layer table (at the 40x40 crop) and recipe."""
    from fernas.model import summarize

    s = summarize(doc, num_classes=num_classes)
    rows = [(r["layer"], r["type"], "x".join(map(str, r["output_shape"])), f"{r['params']:,}") for r in s["layers"]]
    t = doc["train"]
    recipe = (f"optimizer {t['optimizer']}, lr {t['lr']:g}, weight decay {t['weight_decay']:g}, scheduler "
              f"{t['scheduler']}, batch {t['batch_size']}")
    return (table(("layer", "type", "output shape", "params"), rows, text_cols=(0, 1)) +
            f"<p>{s['params']:,} parameters, {s['macs'] / 1e6:.1f} M multiply-adds per image; recipe: {esc(recipe)}</p>")


def read_csv(path: Path) -> list[dict]:
    """A run's CSV file as rows; a damaged one (not UTF-8 after a crash, not CSV) is left out
    with one warning line: the report is best-effort about a run's files."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        print(f"fernas: warning: {path}: not readable ({type(exc).__name__}: {first_line(exc)}); the report "
              "leaves it out", file=sys.stderr)
        return []


def config_block(cfg: dict) -> str:
    return f"<details><summary>config.json</summary><pre>{esc(json.dumps(cfg, indent=2))}</pre></details>"


# -- an evolve run
def evolve_report(run: Path, cfg: dict, row: dict) -> str:
    from fernas import run_analysis as A

    ga = cfg.get("options", {}).get("ga", {})
    max_budget = int(ga.get("max_budget") or 0)
    trials = read_csv(run / "trials.csv")
    hof = _genomes(run / "hall_of_fame")
    classes = len(cfg.get("data", {}).get("classes") or []) or 7
    secs = [section("summary", "Summary", key_values([
        ("state", row["state"]), ("progress", row["progress"]),
        ("trials", f"{row['trials']}" + (f" (and {row['refused']} genomes refused untrained)"
                                          if row.get("refused") else "")),
        ("best genome", row.get("best_gid") or "-"), ("its validation accuracy", fmt(row["best"])),
        (f"highest validation accuracy at the largest budget ({max_budget} epochs)", fmt(row.get("best_trial"))),
        ("training compute (images x multiply-adds)", fmt(row["compute"])),
        ("search time (s)", fmt(row["seconds"], 1)), ("trial slots busy / training", _use(row.get("utilisation"))),
        ("started", row["started"]),
        ("budgets (epochs)", ", ".join(map(str, cfg.get("fitness", {}).get("budgets", [])))),
        ("trial recipe", recipe_text(*stored_recipe(cfg.get("options", {})))),
        ("data", cfg.get("data", {}).get("source")), ("command", "fernas " + " ".join(cfg.get("argv", [])))])
        + config_block(cfg))]
    points = A.best_so_far(trials, max_budget)
    secs.append(section("plots", "Progress", "<div class=figs>" + image_file(run / "progress.png", "progress")
                        + image_file(run / "pareto.png", "Pareto front")
                        + image(A.plot_best_vs_compute(points) if points else None, "best so far against compute")
                        + "</div>"))
    secs.append(section("hall-of-fame", "Hall of fame", _hall_of_fame(hof, classes)))
    seeds = _genomes(run / "seed_designs")
    compare = next_steps.compare_command(run, row.get("best_gid"), int(ga.get("rerank_schedule") or 48))
    secs.append(section("seed-designs", "Seed designs", _seed_designs(seeds, classes, compare)))
    fixed = A.untrained_properties(cfg.get("options", {}))
    secs.append(section("effects", "What the accuracy goes with", _effects(A.effects(trials, max_budget, fixed),
                                                                             len(A.fitness_trials(trials, max_budget)))))
    # the level the run decided with (config's fitness section rounds it); a run without one has no table
    chance = ga.get("chance_level") or cfg.get("fitness", {}).get("chance_level")
    budgets = cfg.get("fitness", {}).get("budgets")
    if budgets and chance:
        secs.append(section("chance", "First trainings that ended at chance",
                            _chance(A.chance_by_property(trials, int(budgets[0]), float(chance), fixed))))
    rows = [[fmt(t.get(c)) if c not in TEXT_COLUMNS else (t.get(c) or "") for c in TRIAL_COLUMNS] for t in trials]
    text_cols = tuple(i for i, c in enumerate(TRIAL_COLUMNS) if c in TEXT_COLUMNS)
    secs.append(section("trials", f"Trials ({len(trials)})", "<p class=note>Click a column to sort.</p><div class=scroll>"
                        + table(TRIAL_COLUMNS, rows, sortable=True, text_cols=text_cols) + "</div>"))
    return page(f"fernas evolve run {run.name}", secs)


def _use(u: dict | None) -> str:
    return f"{u['busy']:.0%} / {u['training']:.0%} of the slots' time" if u else "-"


def _genomes(folder: Path) -> list[dict]:
    """The genome files in `folder`; one that does not load is left out with a warning line, as
    a corrupt metrics.json is: the rest of the page still helps."""
    from fernas.genome import load_genome
    from fernas.errors import GenomeError

    docs = []
    for p in sorted(folder.glob("*.json")):
        try:
            docs.append(load_genome(p))
        except GenomeError as exc:
            print(f"fernas: warning: {exc}; the report leaves it out", file=sys.stderr)
    return docs


def _hall_of_fame(hof: list[dict], classes: int, ranked: bool = True) -> str:
    if not hof:
        return "<p class=note>No genome trained yet.</p>"
    rows = []
    for doc in hof:
        e = doc.get("evolve", {})
        rr = e.get("rerank") if isinstance(e.get("rerank"), dict) else {}
        reranked = f"{fmt(rr.get('mean_val_acc'))} ({rr.get('trainings')})" if rr else "-"
        rows.append((e.get("rank"), e.get("gid"), doc.get("name"), fmt(e.get("val_acc")), reranked, e.get("budget"),
                     fmt(e.get("params")), fmt(e.get("macs")), e.get("generation")))
    note = ("<p class=note>Ranked as the run ranks them: the re-ranked genomes first, by the mean accuracy of "
            "their re-ranking trainings (with the trial recipe also their own search trial; means within one "
            "standard error of each other tie and go by their search trial, means at chance by the loss), then "
            "the others by the fitness rule (larger budget, then validation accuracy; accuracies at or below the "
            "chance level tie and the lower validation loss ranks higher). \"val acc\" is the genome's search "
            "trial at its largest budget.</p>")
    columns = ("rank", "genome id", "name", "val acc", "re-ranked mean (trainings)", "budget", "params", "MACs",
               "generation")
    head = (note if ranked else "") + table(columns, rows, text_cols=(1, 2, 4))
    rank = lambda d: f"{d['evolve']['rank']}. " if d.get("evolve", {}).get("rank") is not None else ""  # noqa: E731
    blocks = "".join(f"<details><summary>{esc(rank(d))}{esc(d.get('name'))}: layers and "
                     f"recipe</summary>{genome_block(d, classes)}</details>" for d in hof)
    return head + blocks


def _seed_designs(seeds: list[dict], classes: int, compare: str | None) -> str:
    """The --seed-genomes designs the run has results for, as the hall of fame lists genomes, and
    the command that trains the best beside them (`next_steps.compare_command`, as the run's
    last lines give it)."""
    if not seeds:
        return "<p class=note>No seed design trained (none given, or none under the caps).</p>"
    note = ("<p class=note>Short trials favour networks that learn fast: train the best beside these "
            f"at the length you will train the one you keep: <code>{esc(compare)}</code></p>" if compare else
            "<p class=note>The best genome is one of these designs: no new genome beat it.</p>")
    return note + _hall_of_fame(seeds, classes, ranked=False)


def _effects(effs: list[dict], n: int) -> str:
    from fernas import run_analysis as A

    note = ("<p class=note>Validation accuracy of the completed trials at the largest budget, grouped by each "
            "property of the genome (numbers in up to five quantile bins). ω² is the share of the accuracy's "
            "variance the grouping explains, corrected for the number of groups. The GA breeds from its best, so "
            "its trials are no random sample: these are associations in what the run trained, not causes.</p>")
    if not effs:
        return note + f"<p class=note>Too few trials for this ({n}; at least {A.MIN_TRIALS}).</p>"
    rows = []
    for e in effs:
        best = max(e["means"].items(), key=lambda kv: kv[1][0])
        rows.append((e["property"], f"{e['omega2']:.2f}", e["values"], f"{best[0]} ({best[1][0]:.4f}, n={best[1][1]})"))
    return (note + table(("property", "ω²", "groups", "best group (mean val acc, trials)"), rows, text_cols=(0, 3))
            + image(A.plot_effects(effs), "accuracy by property"))


def _chance(c: dict) -> str:
    """`run_analysis.chance_by_property` as a summary line and a table of shares per value."""
    from fernas import run_analysis as A

    stopped = (f" Ray Tune's ASHA stopped {c['stopped']} more before the budget's end ({c['stopped_at_chance']} "
               f"of them at chance then), not counted here." if c["stopped"] else "")
    if not c["trainings"]:
        return f"<p class=note>No first training has run its whole smallest budget yet.{stopped}</p>"
    share = (f" The ones at chance took {c['compute_at_chance'] / c['compute']:.0%} of these trainings' compute."
             if c["compute"] else "")
    note = (f"<p class=note>{c['at_chance']} of {c['trainings']} first trainings ended at or below chance "
            f"(validation accuracy &le; {c['chance_level']:.4f}, the largest class's share + 1 s.e.) after "
            f"{c['budget']} epoch(s): among themselves they were ranked by validation loss only.{share}{stopped} "
            "Below, per value of each property, how many of its trainings ended at chance, largest ω² first. "
            "Like the table above these are associations in what the run trained, not causes (properties "
            "come together: a seed design's recipe fixes several); a value at chance in many trainings is a "
            "candidate to leave out of the search space (<code>--space</code>), or a sign that the smallest "
            "budget is too short for it.</p>")
    if not c["properties"]:
        return note + f"<p class=note>Too few trainings for the table ({c['trainings']}; at least {A.MIN_TRIALS}).</p>"
    rows = [(e["property"], f"{e['omega2']:.2f}",
             " · ".join(f"{v}: {round(m * n)} of {n}" for v, (m, n) in e["means"].items())) for e in c["properties"]]
    return note + table(("property", "ω²", "at chance, per value"), rows, text_cols=(0, 2))


# -- a training run
def train_report(run: Path, cfg: dict, row: dict) -> str:
    from fernas.genome import load_genome

    m = _metrics(run / "metrics.json")
    summary = [("state", row["state"]), ("progress", row["progress"]), ("started", row["started"])]
    if m:
        summary += [("test accuracy, ten-crop", fmt(m.get("test_accuracy_tencrop"))),
                    ("test accuracy, centre crop", fmt(m.get("test_accuracy_single"))),
                    ("macro F1", fmt(m.get("macro_f1"))), ("test images", m.get("n_test")),
                    ("parameters", fmt(m.get("params"))), ("multiply-adds per image", fmt(m.get("macs"))),
                    ("training time (s)", fmt(m.get("train_seconds"), 1)), ("device", m.get("device"))]
        if row.get("best_crop") == "single":
            summary.insert(3, ("the figure to compare", "centre crop: it trained on the centre crop alone (augment "
                               "none, one crop), so the ten-crop test, macro F1, per-class table and confusion "
                               "matrix show views it never saw"))
    secs = [section("summary", "Summary", key_values(summary) + config_block(cfg))]
    hist = read_csv(run / "history.csv")
    secs.append(section("curves", "Training curves", _curves(run, hist)))
    if m:
        per = [(c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"])
               for c, v in m.get("per_class", {}).items()]
        secs.append(section("classes", "Per class", table(("class", "precision", "recall", "F1", "support"), per,
                                                          sortable=True, text_cols=(0,))
                            + image_file(run / "confusion.png", "confusion matrix")))
        secs.append(section("saliency", "Saliency maps", image_file(run / "saliency.png", "saliency maps")))
    if (run / "genome.json").is_file():
        classes = len(m.get("classes") or cfg.get("data", {}).get("classes") or []) or 7
        secs.append(section("network", "Network", genome_block(load_genome(run / "genome.json"), classes)))
    if hist:
        cols = list(hist[0])
        secs.append(section("history", "History", table(cols, [[fmt(h[c]) if c != "phase" else h[c] for c in cols]
                                                                for h in hist], text_cols=(0,))))
    return page(f"fernas training run {run.name}", secs)


def _curves(run: Path, hist: list[dict]) -> str:
    """curves.png, which a training writes once it has tested; before that (running, stopped)
    the curves of the epochs history.csv holds so far."""
    if (run / "curves.png").is_file() or not hist:
        return image_file(run / "curves.png", "training curves")
    from fernas.report import curves_png

    def number(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    rows = [{k: v if k == "phase" else number(v) for k, v in h.items()} for h in hist]
    return (f"<p class=note>the {len(rows)} epoch(s) trained so far (history.csv)</p>"
            + image(curves_png(rows, run.name), "training curves"))


def _metrics(path: Path) -> dict:
    """A training run's metrics.json; {} before the run has tested.  A corrupt one is left out
    with one warning line, as `fernas runs` counts it as absent: the curves and history on the
    page still help, and the report is best-effort about a run's files."""
    if not path.is_file():
        return {}
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, not UTF-8, nested thousands deep
        reason = f"not readable ({type(exc).__name__}: {first_line(exc)})"
    else:
        if isinstance(m, dict):
            return m
        reason = f"expected an object, found {json_type(m)}"
    print(f"fernas: warning: {path}: {reason}; the report leaves out the test results", file=sys.stderr)
    return {}


def write_report(run_dir, own_lock: bool = False, state: str | None = None) -> Path:
    """Write RUN/report.html for an evolve or training run; RunDirError for anything else.
    `own_lock`: called by the process that runs it, which must not probe its own lock (on NFS,
    where flock is a POSIX lock of the process, the probe would release it); the state is then
    `state`, or what its files say."""
    out, text = report_page(run_dir, own_lock, state)
    atomic_write_text(out, text)
    return out


def report_page(run_dir, own_lock: bool = False, state: str | None = None) -> tuple[Path, str]:
    """(RUN/report.html, its text), written by `write_report`."""
    from fernas.runs import describe_run, read_config

    run = Path(run_dir)
    row = describe_run(run, probe_lock=not own_lock)
    if own_lock and state:
        row["state"] = state
    if row["state"].startswith("version"):
        raise RunDirError(f"{run}: written by another fernas ({row['state']}); this one reports its own runs only")
    cfg = read_config(run)
    text = evolve_report(run, cfg, row) if row["kind"] == "evolve" else train_report(run, cfg, row)
    return run / REPORT_NAME, text
