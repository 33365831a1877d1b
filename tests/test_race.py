"""`fernas train/decode --train --race N`: finalists train N epochs, the best continues its own training.

The winner's run must be the run an uninterrupted `fernas train` of it writes (same history, same
test), a SIGKILL during the race and `--resume` must train nothing completed again and continue
the same winner, and bad races are refused with one line."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fernas.errors import RunDirError
from fernas.fulltrain import RUN_VERSION
from fernas.race import score_at, winner_index

from test_fulltrain_cli import TINY, cli

# The tiny genome with three learning rates.  Four epochs with a race after two, one
# fine-tuning epoch.
LRS = {"a": ("adam", 0.002), "b": ("adam", 0.0001), "c": ("adam", 0.01)}
FLAGS = ["--epochs", 4, "--fine-tune-epochs", 1, "--data", "demo:280", "--train-crops", 1, "--device", "cpu"]


@pytest.fixture(scope="module")
def genomes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finalists")
    paths = []
    for name, (opt, lr) in LRS.items():
        doc = json.loads(json.dumps(TINY))
        doc["name"], doc["train"]["optimizer"], doc["train"]["lr"] = name, opt, lr
        (folder / f"{name}.json").write_text(json.dumps(doc))
        paths.append(folder / f"{name}.json")
    return paths


@pytest.fixture(scope="module")
def raced(genomes, tmp_path_factory):
    out = tmp_path_factory.mktemp("race") / "race"
    rc, stdout, err = cli("train", *genomes, "--race", 2, "--out", out, *FLAGS)
    assert rc == 0, err
    # each start ends at epoch 2 of the 4-epoch schedule, and its ETA counts to there
    assert err.count("first 2 of 4+1 epochs") == 3 and err.count("epoch 2/4") == 3
    assert all("ETA 0m00s" in part.split("\r")[-1] for part in err.split("\n") if "epoch 2/4" in part)
    return out, stdout


def history(run: Path) -> list[list[str]]:
    """history.csv without its seconds column (the one thing two equal trainings differ in)."""
    with open(run / "history.csv") as f:
        return [row[:-1] for row in csv.reader(f)]


def test_the_winner_is_the_run_an_uninterrupted_training_writes(raced, genomes, tmp_path):
    out, stdout = raced
    race = json.loads((out / "race.json").read_text())
    scores, losses = ([g[k] for g in race["genomes"]] for k in ("val_acc", "val_loss"))
    assert race["epochs"] == 2 and race["winner"] == winner_index(scores, losses)
    w = race["genomes"][race["winner"]]["name"]
    assert re.search(rf"{w}  {max(scores):.4f}( \(loss [0-9.]+\))?  continues", stdout), stdout
    for g in race["genomes"]:  # each score is the finalist's own epoch 2
        run = out / g["name"]
        assert g["val_acc"] == pytest.approx(float(history(run)[2][6]), abs=1e-6)
        assert g["val_loss"] == pytest.approx(float(history(run)[2][5]), rel=1e-5)
        assert (run / "metrics.json").exists() == (g["name"] == w)
        assert (run / "checkpoint-train.pt").exists() == (g["name"] != w)  # a loser can be finished later
        if g["name"] != w:
            assert [r[1] for r in history(run)[1:]] == ["1", "2"]
    alone = tmp_path / "alone"
    rc, _, err = cli("train", genomes[race["winner"]], "--out", alone, *FLAGS)
    assert rc == 0, err
    assert history(out / w) == history(alone)
    m_race, m_alone = (json.loads((p / "metrics.json").read_text()) for p in (out / w, alone))
    for key in ("test_accuracy_tencrop", "test_loss_tencrop", "selected_weights"):
        assert m_race[key] == m_alone[key], key
    config = json.loads((out / w / "config.json").read_text())  # nobody resumed it: the race went on
    assert len(config["continued_after_race"]) == 1 and "resumed" not in config


def test_a_killed_race_resumes_the_same_winner_without_training_a_finished_start_again(raced, genomes, tmp_path):
    out, _ = raced
    run = tmp_path / "race"
    # two torch threads, as conftest gives this process: the figures are compared bit for bit
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "2"}
    argv = [sys.executable, "-m", "fernas", "train", *map(str, genomes), "--race", "2", "--out", str(run),
            *map(str, FLAGS)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = run / "b" / "history.csv"  # killed once the second finalist has trained an epoch
    deadline = time.monotonic() + 240
    while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert second.exists() and json.loads((run / "race.json").read_text())["winner"] is None  # mid-race
    # a's two race epochs, with their seconds: a retraining would time them again, whether a
    # then wins (and goes on) or loses
    first = (run / "a" / "history.csv").read_text().splitlines()[:3]
    assert [r[1] for r in history(run / "a")[1:3]] == ["1", "2"]
    # the resume does not repeat --race: race.json says it is one
    rc, stdout, err = cli("train", *genomes, "--out", run, "--resume", *FLAGS)
    assert rc == 0, err
    assert (run / "a" / "history.csv").read_text().splitlines()[:3] == first  # a's two epochs not trained again
    stored, reference = (json.loads((p / "race.json").read_text()) for p in (run, out))
    assert [g["val_acc"] for g in stored["genomes"]] == [g["val_acc"] for g in reference["genomes"]]
    assert stored["winner"] == reference["winner"]
    w = stored["genomes"][stored["winner"]]
    assert history(run / w["name"]) == history(out / w["name"])
    # resumed again once complete: nothing to train, the winner's metrics stand
    rc, _, err = cli("train", *genomes, "--out", run, "--resume", *FLAGS)
    assert rc == 0 and "already trained" in err


def test_bad_races_are_refused_with_one_line(raced, genomes, tmp_path):
    out, _ = raced
    for argv, expected in [
        ((genomes[0], "--race", 2), "a race needs two or more genomes"),
        ((*genomes[:2], "--race", 4), "--race 4: must be fewer than --epochs 4"),
        ((*genomes[:2], "--race", -1), "--race -1: must be >= 0"),
    ]:
        rc, _, err = cli("train", *argv, "--out", tmp_path / "new", *FLAGS)
        assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()
    # another race into a directory that holds one (other names: other run directories): refused
    before = (out / "race.json").read_bytes()
    renamed = []
    for path in genomes[:2]:
        doc = json.loads(path.read_text())
        doc["name"] = "other-" + doc["name"]
        (tmp_path / doc["name"]).with_suffix(".json").write_text(json.dumps(doc))
        renamed.append((tmp_path / doc["name"]).with_suffix(".json"))
    rc, _, err = cli("train", *renamed, "--race", 2, "--out", out, *FLAGS)
    assert rc == 2 and f"{out}: holds another run" in err
    # its resume with the finalists in another order, or renamed (their directories would differ)
    for argv in ((genomes[1], genomes[0], genomes[2]), (*renamed, genomes[2])):
        rc, _, err = cli("train", *argv, "--race", 2, "--out", out, "--resume", *FLAGS)
        assert rc == 2 and "race.json: a race of other genomes or names (a (id " in err, err
    assert (out / "race.json").read_bytes() == before
    assert not any((out / p.stem).exists() for p in renamed)
    # a resume with --race of runs that were no race
    plain = tmp_path / "plain"
    for g in ("a", "b"):
        (plain / g).mkdir(parents=True)
        (plain / g / "config.json").write_text(json.dumps({"fernas_train_run": RUN_VERSION, "args": {}}))
    rc, _, err = cli("train", *genomes[:2], "--race", 2, "--out", plain, "--resume", *FLAGS)
    assert rc == 2 and "holds runs that are not a race (no race.json); resume them without --race" in err
    # a race (or a comparison) into one genome's run directory
    rc, _, err = cli("train", *genomes[:2], "--race", 2, "--out", plain / "a", *FLAGS)
    assert rc == 2 and "a: holds one genome's training run; several genomes need a directory of their own" in err
    assert sorted(p.name for p in (plain / "a").iterdir()) == [".lock", "config.json"]
    # a damaged record
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "race.json").write_text(json.dumps({"fernas_race": 1, "epochs": 2, "winner": 7,
                                                  "genomes": [{"genome_id": "x", "dir": "a"}] * 2}))
    rc, _, err = cli("train", *genomes[:2], "--out", broken, "--resume", *FLAGS)
    assert rc == 2 and "race.json: incomplete race record" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli("decode", *genomes, "--race", 2)
    assert rc == 2 and "--race only applies with --train" in err
    # the finished winner's directory resumed with another genome: refused, not reported as done
    race = json.loads(before)
    w = race["winner"]
    rc, _, err = cli("train", genomes[(w + 1) % 3], "--out", out / race["genomes"][w]["name"], "--resume", *FLAGS)
    assert rc == 2 and "holds a run of genome" in err and len(err.strip().splitlines()) == 1, err
    # the finished winner's metrics damaged by hand: one line naming the file
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(out, copy)
    (copy / race["genomes"][w]["name"] / "metrics.json").write_text("{")
    rc, _, err = cli("train", *genomes, "--out", copy, "--resume", *FLAGS)
    assert rc == 2 and "metrics.json: unreadable metrics of a finished run" in err, err
    assert len(err.strip().splitlines()) == 1


def test_every_genome_gets_its_own_directory():
    from fernas.train_several import plan_run_dirs

    docs = [{"name": n} for n in ("A", "A", "A-2", "a", "..", ".", "x/y")]
    base, dirs = plan_run_dirs(docs, "out")
    assert [d.name for d in dirs] == ["A", "A-2", "A-2-2", "a-3", "genome", "genome-2", "x-y"]
    assert all(d.parent.name == "out" for d in dirs)


def test_the_score_is_epoch_n_and_ties_go_to_the_lower_loss_then_the_order_given():
    rows = [{"phase": "train", "epoch": 1, "val_acc": 0.5, "val_loss": 1.0},
            {"phase": "train", "epoch": 2, "val_acc": 0.3, "val_loss": 1.2345678}]
    assert score_at(rows, 2) == 0.3 and score_at(rows, 3) is None
    assert score_at(rows, 2, "val_loss") == 1.23457
    assert score_at([{"phase": "train", "epoch": 2, "val_acc": float("nan")}], 2) is None
    assert score_at([{"phase": "train", "epoch": 2, "val_acc": 0.1}], 2, "val_loss") is None
    assert winner_index([0.3, 0.5, 0.5]) == 1 and winner_index([None, 0.1]) == 1
    assert winner_index([0.3, 0.5, 0.5], [0.1, 1.2, 1.1]) == 2  # the tie: the lower loss
    assert winner_index([0.5, 0.5], [None, 1.1]) == 1 and winner_index([0.5, 0.5], [1.1, 1.1]) == 0
    assert winner_index([0.4, 0.5], [0.1, 9.0]) == 1  # the loss only settles a tie
    with pytest.raises(RunDirError, match="every finalist of the race diverged"):
        winner_index([None, None])


def test_the_race_table_shows_the_losses_that_settled_a_tie(capsys, tmp_path):
    from fernas.race import print_race

    race = {"epochs": 8, "winner": 1, "genomes": [
        {"name": "a", "dir": "r/a", "val_acc": 0.5, "val_loss": 1.25},
        {"name": "b", "dir": "r/b", "val_acc": 0.5, "val_loss": 1.94636},
        {"name": "c", "dir": "r/c", "val_acc": 0.25, "val_loss": 0.5},
        {"name": "d", "dir": "r/d", "val_acc": 0.5, "val_loss": 1.9464}]}  # the winner's loss to 4 decimals
    race["genomes"][0]["val_loss"] = 1.95
    print_race(race, tmp_path)
    out = capsys.readouterr().out
    assert "a tie of accuracy goes to the lower validation loss" in out
    # the tie in the order its loss settled it, to five decimals (four would show d's as the winner's)
    assert ("b  0.5000 (loss 1.94636)  continues\n  d  0.5000 (loss 1.94640)  stopped (r/d)\n"
            "  a  0.5000 (loss 1.95000)  stopped (r/a)") in out
    assert "c  0.2500  stopped (r/c)" in out  # not in the tie: no loss shown
    print_race({**race, "genomes": race["genomes"][1:3], "winner": 0}, tmp_path)  # b and c: no tie
    assert "loss" not in capsys.readouterr().out
    unrecorded = [{k: v for k, v in g.items() if k != "val_loss"} for g in race["genomes"]]
    print_race({**race, "genomes": unrecorded, "winner": 0}, tmp_path)  # a race recorded without losses
    out = capsys.readouterr().out
    assert "a tie of accuracy goes to the first given (no validation losses recorded)" in out
    assert "a  0.5000  continues" in out and "(loss" not in out


def test_a_race_without_a_validation_split_is_refused_before_it_trains(tmp_path):
    from types import SimpleNamespace

    from fernas.errors import UserError
    from fernas.race import race

    with pytest.raises(UserError, match="the race compares validation accuracy, and the data has no validation"):
        race([TINY, TINY], ["a", "b"], None, SimpleNamespace(val=[]), [tmp_path / "a", tmp_path / "b"], tmp_path, 2,
             resume=False, invocation=None)
    assert not any(tmp_path.iterdir())


def test_an_evolve_run_ends_with_how_to_race_its_top_three(tmp_path):
    from fernas.search.next_steps import race_command

    (tmp_path / "config.json").write_text(json.dumps({"options": {"data": "demo-hard:1400", "data_args": {}}}))
    hof = tmp_path / "hall_of_fame"
    hof.mkdir()
    (hof / "01_aaa.json").write_text("{}")
    assert race_command(tmp_path, 48) is None  # one genome: nothing to race
    for rank, gid in enumerate(["bbb", "ccc", "ddd"], start=2):
        (hof / f"{rank:02d}_{gid}.json").write_text("{}")
    assert race_command(tmp_path, 8) is None  # a race must end before the training does: --race 8 needs --epochs > 8
    assert race_command(tmp_path, 48) == (
        f"fernas decode {tmp_path}/hall_of_fame/0[1-3]_*.json --train --race 8 --data demo-hard:1400 "
        "--epochs 48 --fine-tune-epochs 2 --train-crops 1")  # the length the race was measured at


def test_a_finalist_that_lost_can_be_finished_later(raced, genomes, tmp_path):
    import shutil

    from fernas.runs import describe

    out, _ = raced
    race = json.loads((out / "race.json").read_text())
    states = {g["name"]: describe(out / g["name"])["state"] for g in race["genomes"]}
    winner = race["genomes"][race["winner"]]["name"]
    assert states == {g["name"]: "finished" if g["name"] == winner else "lost race" for g in race["genomes"]}
    loser = next(i for i, g in enumerate(race["genomes"]) if g["name"] != winner)
    copy = tmp_path / "race"
    shutil.copytree(out, copy)
    name = race["genomes"][loser]["name"]
    rc, _, err = cli("train", genomes[loser], "--out", copy / name, "--resume", *FLAGS)
    assert rc == 0, err
    assert [r[:2] for r in history(copy / name)[1:]] == [["train", "1"], ["train", "2"], ["train", "3"],
                                                          ["train", "4"], ["finetune", "1"]]
    assert history(copy / name)[:3] == history(out / name)[:3] and describe(copy / name)["state"] == "finished"


def test_a_winner_that_diverges_ends_the_command_with_one_line(genomes, tmp_path, monkeypatch):
    """A finalist diverging in its start drops out; the winner diverging later ends the command
    with one line and status 1 (the genome's training failed, not the user's input)."""
    from fernas import fulltrain
    from fernas.errors import TrainingDiverged

    real = fulltrain.train_genome

    def diverging(doc, data, cfg, **kw):
        if doc["name"] == "a" or cfg.stop_after_epoch is None:  # a's start, and every continuation
            raise TrainingDiverged("loss became nan at epoch 1 step 3 (lr 0.002)")
        return real(doc, data, cfg, **kw)

    monkeypatch.setattr(fulltrain, "train_genome", diverging)
    states = {}

    def continuation(doc, data, cfg, run_dir, **kw):  # while the winner trains on: the others are let go
        from fernas.runs import describe

        states.update({p.name: describe(p)["state"] for p in run_dir.parent.iterdir() if p.is_dir()})
        return real_protocol(doc, data, cfg, run_dir, **kw)

    real_protocol = fulltrain.run_protocol
    monkeypatch.setattr(fulltrain, "run_protocol", continuation)
    rc, stdout, err = cli("train", *genomes, "--race", 2, "--out", tmp_path / "race", *FLAGS)
    race = json.loads((tmp_path / "race" / "race.json").read_text())
    assert race["genomes"][0]["val_acc"] is None and race["genomes"][0]["dropped"].startswith("diverged")
    assert race["winner"] in (1, 2) and "a  diverged: loss became nan" in stdout
    winner, loser = ("b", "c") if race["winner"] == 1 else ("c", "b")
    assert states[winner] == "running" and states[loser] == "lost race" and states["a"] != "running"
    runner = loser
    score = next(g["val_acc"] for g in race["genomes"] if g["name"] == runner)
    assert rc == 1 and err.strip().splitlines()[-1] == (
        f"fernas: error: the training diverged: loss became nan at epoch 1 step 3 (lr 0.002) (the race's winner, "
        f"{winner}); the runner-up {runner} ({score:.4f} after epoch 2) is finished by `fernas train "
        f"{genomes['abc'.index(runner)]} --out {tmp_path / 'race' / runner} --resume`; its run directory keeps "
        "its last checkpoint")


def test_a_finalist_that_diverged_is_not_trained_again_on_resume(genomes, tmp_path, monkeypatch):
    """Interrupted after a finalist diverged and before the race was decided: race.json already
    says so, and the resume goes on with the others without training the diverged one again."""
    from fernas import fulltrain
    from fernas.errors import TrainingDiverged

    real, trained = fulltrain.train_genome, []

    def first_run(doc, data, cfg, **kw):
        if doc["name"] == "a":
            raise TrainingDiverged("loss became nan at epoch 1 step 3 (lr 0.002)")
        if doc["name"] == "c":  # Ctrl-C during the last finalist's start
            raise KeyboardInterrupt
        return real(doc, data, cfg, **kw)

    monkeypatch.setattr(fulltrain, "train_genome", first_run)
    out = tmp_path / "race"
    rc, _, err = cli("train", *genomes, "--race", 2, "--out", out, *FLAGS)
    race = json.loads((out / "race.json").read_text())
    assert rc == 130 and race["winner"] is None, err
    assert race["genomes"][0]["dropped"].startswith("diverged") and race["genomes"][1]["val_acc"] is not None
    assert "val_acc" not in race["genomes"][2]
    b_score = race["genomes"][1]["val_acc"]

    def resumed(doc, data, cfg, **kw):
        trained.append((doc["name"], cfg.stop_after_epoch))
        return real(doc, data, cfg, **kw)

    monkeypatch.setattr(fulltrain, "train_genome", resumed)
    rc, stdout, err = cli("train", *genomes, "--out", out, "--resume", *FLAGS)
    assert rc == 0, err
    assert "a" not in [name for name, _ in trained] and ("c", 2) in trained
    race = json.loads((out / "race.json").read_text())
    assert race["winner"] in (1, 2) and race["genomes"][0]["dropped"].startswith("diverged")
    assert race["genomes"][1]["val_acc"] == b_score  # read again from b's checkpoint: the same score
    assert "a  diverged: loss became nan" in stdout
