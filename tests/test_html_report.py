"""report.html of an evolve run (GA and run-directory writer, stand-in fitness) and of a real
training run, opened in headless Chromium: it renders without script errors, its sections and
numbers are on the page, the trials sort; a screenshot of each is kept in build/screenshots."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from test_fulltrain_cli import FAST, TINY, cli
from test_runs import evolve_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import browser  # noqa: E402

from fernas import genome as G  # noqa: E402
from fernas.html_report import TRIAL_COLUMNS  # noqa: E402

SHOTS = ROOT / "build" / "screenshots"
needs_chromium = pytest.mark.skipif(browser.chromium() is None, reason="chromium not installed (.ci/run installs it)")


def trial_rows(dom: str) -> list[list[str]]:
    """The cells of the trials table's body rows, in page order."""
    body = dom[dom.index("id=\"trials\""):]
    body = body[body.index("<tbody>"):body.index("</tbody>")]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "search"
    ev = evolve_run(out, pop=8, generations=3, rerank_top=0, min_budget=1, max_budget=1)
    # what a real run's config says of its fitness: a chance level in the middle of the accuracies
    cfg = json.loads((out / "config.json").read_text())
    accs = sorted(float(r["val_acc"]) for r in csv.DictReader((out / "trials.csv").open())
                  if r["kind"] == "first" and r["status"] == "ok")
    cut = next(i for i in range(len(accs) // 2, len(accs)) if accs[i] < accs[i + 1])  # between two values
    cfg["fitness"] = {"budgets": [1], "chance_level": accs[cut]}
    cfg["options"].update(trial_batch=32, trial_augment="none")  # the trial recipe it says it trained with
    (out / "config.json").write_text(json.dumps(cfg))
    rc, stdout, err = cli("report", out)
    assert rc == 0 and "report.html" in stdout, err
    return out, ev


def test_evolve_report_content(search):
    out, ev = search
    text = (out / "report.html").read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: opens without a network
    for anchor in ("summary", "plots", "hall-of-fame", "seed-designs", "effects", "chance", "trials"):
        assert f"id='{anchor}'" in text, anchor
    seeds = text[text.index("id='seed-designs'"):text.index("id='effects'")]
    kept = sorted((out / "seed_designs").glob("*.json"))
    assert kept and all(G.load_genome(p)["evolve"]["gid"] in seeds for p in kept)
    from fernas.search.next_steps import compare_command  # the command the run's last lines give

    said = compare_command(out, ev.best().gid, 48)
    assert (html.escape(said) in seeds) if said else "The best genome is one of these designs" in seeds
    assert text.count("data:image/png;base64,") >= 4  # progress, Pareto, best vs compute, effects
    best = ev.hall_of_fame()[0]
    assert best.gid in text and f"{ev.cache[best.gid]['val_acc']:.4f}" in text
    hof = text[text.index("id='hall-of-fame'"):text.index("id='seed-designs'")]
    assert "Ranked as the run ranks them" in hof and "Ranked as" not in seeds  # what ranked it, and why
    assert "ω²" in text and "not causes" in text
    summary = text[text.index("id='summary'"):text.index("id='plots'")]
    assert "trial recipe" in summary and "batch 32, augmentation none" in summary
    effects = text[text.index("id='effects'"):text.index("id='trials'")]  # no batch size under a trial batch
    assert "optimizer" in effects and "batch size" not in effects
    level = json.loads((out / "config.json").read_text())["fitness"]["chance_level"]
    first = [r for r in csv.DictReader((out / "trials.csv").open()) if r["kind"] == "first" and r["status"] == "ok"]
    n = sum(float(r["val_acc"]) <= level for r in first)
    chance = text[text.index("id='chance'"):text.index("id='trials'")]
    assert 0 < n < len(first) and f"{n} of {len(first)} first trainings ended at or below chance" in chance
    assert "optimizer" in chance and "at chance, per value" in chance


@needs_chromium
def test_evolve_report_renders_and_sorts_in_chromium(search):
    out, _ = search
    url = (out / "report.html").resolve().as_uri()
    dom, errors = browser.render(url + "#sort=val_acc")
    assert errors == [] and 'data-rendered="ok"' in dom
    with (out / "trials.csv").open() as fh:
        trials = list(csv.DictReader(fh))
    rows = trial_rows(dom)
    assert len(rows) == len(trials)
    col = TRIAL_COLUMNS.index("val_acc")
    shown = [float(r[col]) for r in rows if r[col] != "-"]
    best = max(float(t["val_acc"]) for t in trials if t["val_acc"])
    assert shown == sorted(shown, reverse=True) and shown[0] == pytest.approx(best, abs=1e-4)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(url, SHOTS / "report-evolve.png", 1280, 2400)
    assert (SHOTS / "report-evolve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_chromium
def test_training_run_writes_its_report_and_it_renders(tmp_path):
    genome = tmp_path / "tiny.json"
    genome.write_text(json.dumps(TINY))
    rc, _, err = cli("train", genome, "--epochs", 2, "--fine-tune-epochs", 0, "--out", tmp_path / "run", *FAST)
    assert rc == 0, err
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    dom, errors = browser.render((run / "report.html").resolve().as_uri())
    assert errors == [] and 'data-rendered="ok"' in dom
    for anchor in ("summary", "curves", "classes", "saliency", "network", "history"):
        assert f'id="{anchor}"' in dom, anchor
    assert f"{metrics['test_accuracy_tencrop']:.4f}" in dom and ">finished<" in dom
    assert dom.count("data:image/png;base64,") == 3  # curves, confusion, saliency
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot((run / "report.html").resolve().as_uri(), SHOTS / "report-train.png", 1280, 2400)


def test_report_refuses_what_is_not_a_run(tmp_path, search):
    rc, _, err = cli("report", tmp_path)
    assert rc == 2 and "not a fernas run directory" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report.html").exists()
    run = tmp_path / "run"  # with a good run before it: neither page is written
    shutil.copytree(search[0], run)
    (run / "report.html").unlink()
    rc, out, err = cli("report", run, tmp_path)
    assert rc == 2 and out == "" and not (run / "report.html").exists()


def test_the_hall_of_fame_shows_the_re_ranked_mean_that_ranked_a_genome(search, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(search[0], out)
    first = sorted((out / "hall_of_fame").glob("*.json"))[0]
    doc = json.loads(first.read_text())
    doc["evolve"]["rerank"] = {"recipe": "trial", "epochs": 4, "trainings": 3, "mean_val_acc": 0.5}
    first.write_text(json.dumps(doc))
    assert cli("report", out)[0] == 0
    text = (out / "report.html").read_text()
    hof = text[text.index("id='hall-of-fame'"):text.index("id='seed-designs'")]
    assert "re-ranked mean (trainings)" in hof and "<td class=t>0.5000 (3)</td>" in hof


def test_evolve_report_without_a_chance_level_has_no_chance_table(search, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(search[0], out)
    cfg = json.loads((out / "config.json").read_text())
    del cfg["fitness"]  # what a run that stored no chance level looks like
    (out / "config.json").write_text(json.dumps(cfg))
    rc, _, err = cli("report", out)
    assert rc == 0, err
    text = (out / "report.html").read_text()
    assert "id='effects'" in text and "id='chance'" not in text


def test_a_corrupt_metrics_json_leaves_the_test_results_out_with_one_warning(tmp_path):
    genome = tmp_path / "tiny.json"
    genome.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    rc, _, err = cli("train", genome, "--epochs", 1, "--fine-tune-epochs", 0, "--out", run, "--data", "demo:14,7,7",
                     "--train-crops", 1, "--augment", "none", "--device", "cpu")
    assert rc == 0, err
    # trained on the centre crop alone: the report says which test figure to compare
    assert "the figure to compare</td><td>centre crop" in (run / "report.html").read_text()
    (run / "metrics.json").write_text('{"x": 1')  # cut short
    rc, stdout, err = cli("report", run)
    assert rc == 0 and "report.html" in stdout
    assert err == (f"fernas: warning: {run / 'metrics.json'}: not valid JSON (line 1 column 8: Expecting ',' "
                   "delimiter); the report leaves out the test results\n")
    text = (run / "report.html").read_text()
    assert "id='curves'" in text and "id='network'" in text and "id='classes'" not in text
    # a training stopped before its test has no curves.png yet: the page draws history.csv's epochs
    (run / "curves.png").unlink()
    assert cli("report", run)[0] == 0
    text = (run / "report.html").read_text()
    assert "the 1 epoch(s) trained so far (history.csv)" in text and "training curves: not written yet" not in text


def test_a_corrupt_hall_of_fame_genome_is_left_out_with_one_warning(search, tmp_path):
    """As a corrupt metrics.json is: the rest of the page still helps."""
    out = tmp_path / "run"
    shutil.copytree(search[0], out)
    first = sorted((out / "hall_of_fame").glob("*.json"))[0]
    first.write_text(json.dumps({**json.loads(first.read_text()), "evolve": 5}))
    rc, _, err = cli("report", out)
    assert rc == 0 and err == f"fernas: warning: {first}: evolve: expected an object, found number; the report " \
                              "leaves it out\n"
    page = (out / "report.html").read_text()
    shown = page[page.index("<section id='hall-of-fame'>"):].split("</section>")[0].count("<details>")
    assert shown == len(list((out / "hall_of_fame").glob("*.json"))) - 1  # the others are shown
