"""Budgets that end a real search at a safe point, --resume with a larger one, a search space
through real Ray Tune trials, and a warm start that trains nothing the first run trained."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fernas import genome as G
from fernas.cli import main

from test_search import read_trials, tiny_genome

ROOT = Path(__file__).resolve().parents[1]
SPACE = ("stages: {count: {max: 2}, all: {width: {max: 32}}}\nhead: {fc_count: 0}\n"
         "train: {optimizer: adam, lr: 0.001, weight_decay: 0.0, scheduler: constant, batch_size: 32}\n")


def evolve(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([sys.executable, "-m", "fernas", "evolve", *argv], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_budgets_space_resume_and_warm_start(tmp_path, capsys):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for d in (tiny_genome(16), tiny_genome(24), tiny_genome(16, lr=1e-2)):  # the last: outside the space
        G.save_genome(d, seeds / f"{d['name']}-{d['train']['lr']}.json")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    common = ["--data", "demo:140,70,70", "--seed-genomes", str(seeds / "*.json"), "--pop", "4",
              "--epochs-per-trial", "1", "--max-steps-per-epoch", "1", "--rerank-top", "1", "--rerank-seeds", "1",
              "--no-dashboard"]
    a = tmp_path / "A"
    run_a = [*common, "--out", str(a), "--generations", "8", "--space", str(space)]  # far more than 4 s of work, also on an idle machine

    # a time budget ends the search in mid-run: running trials finish, no search trial starts
    # after it; the best genome found is re-ranked and the run ends
    res = evolve(*run_a, "--time-budget", "4s")
    assert "left out: outside the search space" in res.stdout and "search ended in generation" in res.stdout
    assert "--time-budget 0m04s spent" in res.stdout and "best genome" in res.stdout, res.stdout
    timed = read_trials(a)
    search = [r for r in timed if r["kind"] != "rerank"]
    assert len(search) < 12 and [r["kind"] for r in timed[len(search):]] == ["rerank"], timed
    assert json.loads((a / "checkpoint.json").read_text())["done"] is True
    assert json.loads((a / "config.json").read_text())["options"]["ga"]["space"]["train.lr"] == [3]
    # the search time a kill would not lose, written from Tune's loop (its first step) on
    clock = json.loads((a / "search_clock.json").read_text())["search_seconds"]
    assert 0 < clock <= json.loads((a / "checkpoint.json").read_text())["meta"]["search_seconds"]

    # a spent budget starts nothing on a resume that does not raise it: not even Ray, and the
    # run's files say the same as before
    config = (a / "config.json").read_bytes()
    res = evolve(*run_a, "--resume", "--pop", "6", "--data-seed", "3")  # settings a run keeps: said, not used
    assert "already complete: --time-budget 0m04s spent" in res.stdout and read_trials(a) == timed
    assert ("the run keeps the settings it started with (its config.json): --data-seed, --pop of this command "
            "line not used") in res.stderr, res.stderr
    assert "Ray:" not in res.stdout and "best genome" in res.stdout and (a / "config.json").read_bytes() == config

    # a trial budget counts the search's trials over all attempts (the time budget raised): the
    # search goes on from the generation it ended in
    n = len(search) + 2
    res = evolve(*run_a, "--resume", "--time-budget", "1h", "--max-trials", str(n))
    assert "the search goes on" in res.stdout and f"--max-trials {n} reached" in res.stdout, res.stdout
    assert "not used" not in res.stderr  # the run's own flags given again, and budgets, which a resume takes
    config = json.loads((a / "config.json").read_text())  # the command that began the run, and this attempt's
    assert config["argv"] == ["evolve", *run_a, "--time-budget", "4s"] and "--max-trials" in config["attempt_argv"]
    first = read_trials(a)
    assert first[:len(timed)] == timed and len([r for r in first if r["kind"] != "rerank"]) == n

    # a compute budget just above what the search spent: the trials started while it was not yet
    # spent finish (at most one per slot), then the re-ranking (its compute not counted)
    spent = sum(float(r["compute"]) for r in first if r["kind"] != "rerank")
    res = evolve(*run_a, "--resume", "--max-trials", "100", "--max-compute", str(int(spent) + 1))
    assert "--max-compute" in res.stdout and "of them re-ranking" in res.stdout, res.stdout
    after = read_trials(a)
    new = [r for r in after[len(first):] if r["kind"] != "rerank"]
    assert after[:len(first)] == first and 1 <= len(new) <= (os.cpu_count() or 1)
    assert spent + sum(float(r["compute"]) for r in new) >= spent + 1
    # the stored compute budget is spent: nothing trains, but a checkpoint that had to fall back
    # to its copy is written again, and trainer checkpoints a kill left behind go
    (a / "checkpoint.json").write_text("{trunc")
    (a / "checkpoints").mkdir(exist_ok=True)
    (a / "checkpoints" / "left.pt").write_bytes(b"x")
    res = evolve(*run_a, "--resume", "--max-trials", "100")
    assert "already complete: --max-compute" in res.stdout and read_trials(a) == after
    assert "checkpoint.prev.json" in res.stderr and not (a / "checkpoints").exists()
    assert json.loads((a / "checkpoint.json").read_text())["done"] is True
    assert main(["evolve", *run_a, "--resume", "--max-compute", "0"]) == 2
    assert "--max-compute 0.0: expected images x multiply-adds above 0" in capsys.readouterr().err
    n = len(after)

    # another space is refused on resume (one line, exit 2)
    other = tmp_path / "other.yaml"
    other.write_text("train: {optimizer: sgd}\n")
    assert main(["evolve", *run_a[:-1], str(other), "--resume"]) == 2
    assert "not the search space of the run" in capsys.readouterr().err

    # a resume that would load other data than the run began with (a file edited, a folder read
    # another way) is refused before it trains: here the run's record says one image more
    a2 = tmp_path / "A2"
    shutil.copytree(a, a2)
    cfg = json.loads((a2 / "config.json").read_text())
    cfg["data"]["n_train"] = 141
    (a2 / "config.json").write_text(json.dumps(cfg))
    raised = ["--resume", "--max-trials", "100", "--time-budget", "1h", "--max-compute", "1e30"]
    assert main(["evolve", *common, "--out", str(a2), "--generations", "8", "--space", str(space), *raised]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"demo:140,70,70: not the data the run in {a2} began with (141/70/70 train/val/test images then, 140/70/70 "
        "now: the data, or how this fernas reads it, changed); a run keeps its data: restore it, or start a new run")
    assert read_trials(a2) == after

    res = evolve(*run_a, *raised)
    rows = read_trials(a)
    assert rows[:n] == after and "best genome" in res.stdout  # nothing trained again; the run ends
    events = list((a / "tensorboard").glob("events.out.tfevents.*"))  # run-level scalars per generation
    assert events and any(b"search/best_val_acc" in e.read_bytes() for e in events)
    assert all(Path(r["log_dir"]).name.startswith(f"gen{r['generation']}_{r['gid']}_b{r['budget']}") for r in rows)
    assert {r["budget"] for r in rows if r["kind"] == "rerank"} == {"8"}  # own recipe: 8 epochs unless told
    keys = [(r["gid"], r["kind"], r["budget"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) and {r["kind"] for r in rows} == {"first", "rerank"}
    for r in rows:  # every genome trained lies inside the space
        doc = json.loads(r["genome"])
        assert doc["train"] == tiny_genome(16)["train"] and len(doc["stages"]) <= 2 and not doc["head"]["fc"]
        assert all(st["width"] <= 32 for st in doc["stages"])

    # a warm start from A with the same data, budgets and seed trains nothing A trained
    b = tmp_path / "B"
    res = evolve(*common, "--out", str(b), "--generations", "1", "--space", str(space), "--warm-start", str(a))
    said = re.search(r"warm start from .*: (\d+) of its (\d+) hall-of-fame genomes head", res.stdout)
    assert said and int(said[1]) == min(4, int(said[2])) == min(4, len(list((a / "hall_of_fame").glob("*.json"))))
    assert read_trials(b) == [] and G.load_genome(b / "best.json")["evolve"]["gid"] == \
        G.load_genome(a / "best.json")["evolve"]["gid"]

    # with another seed its trials would not score the same: refused with the reason
    code = main(["evolve", *common, "--out", str(tmp_path / "C"), "--seed", "3", "--warm-start", str(a)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot warm-start" in err and "seed (0 there, 3 here)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "C").exists()
    # ...and so with another trial recipe (batch size or augmentation of the fitness trainings)
    code = main(["evolve", *common, "--out", str(tmp_path / "D"), "--trial-augment", "vgg", "--warm-start", str(a)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "trial recipe (batch 32, augmentation none there, batch 32, augmentation vgg here)" in err and not (tmp_path / "D").exists()
    # ...and with another re-ranking recipe (its re-ranking trials would be averaged with other ones)
    code = main(["evolve", *common, "--out", str(tmp_path / "E"), "--rerank-recipe", "trial", "--warm-start", str(a)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "re-ranking (own recipe, 8 epochs of a schedule of 48, warm-up 8 there, trial recipe here)" \
        in err and not (tmp_path / "E").exists()
    code = main(["evolve", *common, "--out", str(tmp_path / "E"), "--rerank-budget", "4", "--warm-start", str(a)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "own recipe, 4 epochs of a schedule of 48, warm-up 8 here" in err and not (tmp_path / "E").exists()
    code = main(["evolve", *common, "--out", str(tmp_path / "E"), "--rerank-warmup", "0", "--warm-start", str(a)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "48, warm-up 8 there, own recipe, 8 epochs of a schedule of 48 here" in err and \
        not (tmp_path / "E").exists()


def test_a_raised_budget_continues_the_promotions_of_the_generation_it_ended(tmp_path):
    """A multi-fidelity search a budget ended keeps its generation's trainer checkpoints: the
    resume that raises the budget promotes genomes trained before the end from them (without
    them each such promotion failed, and the genome stayed at the lower budget)."""
    out = tmp_path / "run"
    run = ["--data", "demo:140,70,70", "--pop", "4", "--generations", "1", "--min-budget", "1", "--max-budget", "2",
           "--max-steps-per-epoch", "1", "--max-mmacs", "5", "--rerank-top", "0", "--no-dashboard",
           "--max-concurrent", "2", "--out", str(out)]
    res = evolve(*run, "--max-trials", "4")  # the first rung's four trials: the end comes before any promotion
    assert "--max-trials 4 reached" in res.stdout and {r["kind"] for r in read_trials(out)} == {"first"}
    assert len(list((out / "checkpoints").glob("*.pt"))) == 4
    evolve(*run, "--resume", "--max-trials", "100")
    rows = read_trials(out)
    promoted = [r for r in rows if r["kind"] == "promotion"]
    assert len(promoted) == 2 and all(r["status"] == "ok" for r in rows), rows
    assert {r["gid"] for r in promoted} <= {r["gid"] for r in rows[:4]}  # genomes trained before the end
    assert not (out / "checkpoints").exists()  # the run is done: nothing continues them


def test_a_budget_spent_by_the_last_trials_of_the_search_lets_it_end_as_planned(tmp_path):
    """--max-trials equal to the trials the search has: spent while its last trials run, with
    no trial left to start. They finish, the generation closes (a logbook row, the hall of
    fame) and the search ends by its generations, not by a budget with a generation lost."""
    out = tmp_path / "run"
    res = evolve("--data", "demo:140,70,70", "--pop", "4", "--generations", "1", "--epochs-per-trial", "1",
                 "--max-steps-per-epoch", "1", "--max-mmacs", "5", "--rerank-top", "0", "--no-dashboard",
                 "--max-concurrent", "2", "--max-trials", "4", "--out", str(out))
    assert "reached" not in res.stdout and "gen   0 (1/1)" in res.stdout, res.stdout
    assert len(read_trials(out)) == 4 and len((out / "logbook.csv").read_text().strip().splitlines()) == 2
    ck = json.loads((out / "checkpoint.json").read_text())
    assert ck["meta"]["ended_by"] == "generations" and "search_end" not in ck["meta"]
