"""`fernas evolve` end to end: real Ray Tune trials, the real trainer, tiny demo data (140/70/70).

One run is started with the dashboard, checked through the dashboard's HTTP API (with and
without the token), killed with SIGKILL mid-run, resumed, and checked: no completed trial
ran twice, failing genomes got the penalty with their reason, the outputs are valid.
Bad input is checked in-process (one line, exit 2, nothing slow started).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fernas import genome as G
from fernas.cli import main
from fernas.search.rundir import CONFIG_VERSION

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT / "benchmarks"))
from chaos import descendants, trials as read_trials  # noqa: E402  (shared with the chaos benchmark)

def tiny_genome(width: int, kernel: int = 3, lr: float = 1e-3) -> dict:
    return G.validate({
        "fernas_genome": 1, "name": f"tiny{width}k{kernel}",
        "stages": [{"block": "conv", "repeats": 1, "width": width, "kernel": kernel, "dropout": 0.0, "pool": "max"},
                   {"block": "conv", "repeats": 1, "width": width, "kernel": 3, "dropout": 0.0, "pool": "max"}],
        "head": {"reduce": "avg", "fc": []},
        "train": {"optimizer": "adam", "lr": lr, "weight_decay": 0.0, "scheduler": "constant", "batch_size": 32}})


def get(url: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


# ---------------------------------------------------------------------------- bad input
def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["evolve", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("argv, expect", [
    (["--pop", "1"], "--pop 1"),
    (["--generations", "0"], "--generations 0"),
    (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
    (["--address", "127.0.0.1:9"], "cannot connect to 127.0.0.1:9"),
    (["--gpus-per-trial", "64"], "--gpus-per-trial 64"),
    (["--max-mmacs", "5", "--data", "/nonexistent/fer2013.csv"],  # the seed designs over the cap go unsaid
     "/nonexistent/fer2013.csv: no such file or directory"),
    (["--rerank-top", "1", "--rerank-seeds", "0"], "--rerank-seeds 0: re-ranks nothing, which contradicts "
                                                    "--rerank-top 1; give --rerank-top 0"),
    (["--pop", "2"], "--elite 2 (its default): expected 0 to pop-1 (1) with --pop 2; give --elite 1 or a larger --pop"),
    (["--pop", "3", "--elite", "3"], "--elite 3: expected 0 to pop-1 (2) with --pop 3"),
    (["--max-mmacs", "0.001"], "the full search space: no genome of this space found under --max-mmacs 0.001 "
                               "(the cheapest found: about 0.0401M multiply-adds)"),
    (["--resume"], "--resume needs --out"),
    (["--immigrants", "1.5"], "--immigrants 1.5"),
    (["--asha-grace", "2", "--epochs-per-trial", "8"], "--asha-grace 2: only with --asha"),
    (["--asha", "--asha-grace", "8", "--epochs-per-trial", "8"], "--asha-grace 8: expected 1 to 7"),
    (["--trial-batch", "-1"], "--trial-batch -1: expected 0"),
    (["--trial-batch", "48"], "--trial-batch 48: expected 0 (each genome's own) or a batch size of the genome: "
                              "32, 64, 96, 128, 192, 256"),
    (["--rerank-budget", "0"], "--rerank-budget 0: expected at least 1 epoch"),
    (["--rerank-recipe", "trial", "--rerank-budget", "8"], "--rerank-budget 8: with --rerank-recipe trial the "
                                                           "re-ranking trains the largest budget (4 epochs)"),
    (["--rerank-budget", "16", "--rerank-schedule", "12"], "--rerank-schedule 12: expected at least the re-ranking's 16"),
    (["--rerank-warmup", "-1"], "--rerank-warmup -1: expected >= 0"),
    (["--rerank-top", "5", "--hall-of-fame", "2"], "--rerank-top 5: the re-ranking takes the best of the hall of "
                                                   "fame, which keeps 2 (--hall-of-fame); give --hall-of-fame 5 or more"),
    (["--storage", "/dev/null", "--data", "demo:70,35,35"], "--storage /dev/null: a file, not a directory"),
    (["--storage", "/dev/null/trials", "--data", "demo:70,35,35"],
     "--storage /dev/null/trials: cannot make the directory (Not a directory)"),
])
def test_bad_flags_one_line_exit_2(capsys, tmp_path, argv, expect):
    code, err = run_cli(capsys, "--out", str(tmp_path / "run"), *argv) if "--resume" not in argv \
        else run_cli(capsys, *argv)
    assert code == 2
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # a failed start leaves no run directory behind


def test_a_flag_argparse_refuses_is_one_line(capsys):
    """A mistyped value or command: one line and exit 2, not the 27-line usage block before it."""
    for argv, line in ((["evolve", "--pop", "abc"], "fernas evolve: error: argument --pop: invalid int value: 'abc' "
                                                    "(`fernas evolve --help` lists the flags)"),
                       (["evolv"], "fernas: error: argument COMMAND: invalid choice: 'evolv'")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(line) and len(err.strip().splitlines()) == 1, err


def test_run_directories_that_are_not_are_named_as_such(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("kept")
    trained = tmp_path / "trained"  # a training run: its config.json has no evolve version (it is not version 1 of one)
    trained.mkdir()
    (trained / "config.json").write_text('{"fernas_train_run": 3}')
    for argv, expect in ((["--out", str(trained), "--resume"], f"{trained / 'config.json'}: the config.json of a "
                          "training run (fernas train or decode --train), not a fernas evolve run"),
                         (["--out", str(trained)], f"{trained}: holds a training run (fernas train), not a "
                          "search; choose another --out"),
                         (["--out", str(tmp_path)], f"{tmp_path}: already exists and is not empty, and holds no "
                          "fernas evolve run; choose another --out"),
                         (["--out", str(afile)], f"{afile}: not a directory (--out names the run directory)"),
                         (["--out", str(afile), "--resume"], f"{afile}: not a directory"),
                         (["--out", str(tmp_path / "run"), "--warm-start", str(tmp_path / "nosuch")],
                          f"{tmp_path / 'nosuch'}: no such run directory")):
        code, err = run_cli(capsys, *argv)
        assert code == 2 and err == f"fernas: error: {expect}", err
    assert afile.read_text() == "kept" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["evolve"], ["train", str(ROOT / "genomes" / "vgg_khaireddin.json")]])
def test_seeds_beyond_numpys_range_are_refused_by_the_flag(capsys, tmp_path, command):
    """A seed past 2**63 used to end in OverflowError, after the run directory was written (seeds of
    5e9 or -1 work, as they did)."""
    with pytest.raises(SystemExit) as exc:
        main([*command, "--seed", "99999999999999999999", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "argument --seed: expected an integer from -1000000000000 to 1000000000000, got 99999999999999999999" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ga_flags_reach_the_config_and_stored_options_resume_unchanged(tmp_path):
    from dataclasses import asdict

    from fernas.cli import build_parser
    from fernas.commands.evolve import options_from_args
    from fernas.evolve import GAConfig
    from fernas.search import EvolveOptions
    from fernas.search.tuner import asha_scheduler

    parse = lambda *a: options_from_args(build_parser().parse_args(["evolve", "--out", str(tmp_path), *a]))  # noqa: E731
    assert parse().ga.novel_offspring and parse().ga.mutation == "creep" and parse().ga.max_mmacs == 3000
    textbook = parse("--no-novel-offspring", "--mutation-operator", "uniform", "--max-mmacs", "60").ga
    assert (textbook.novel_offspring, textbook.mutation, textbook.max_mmacs) == (False, "uniform", 60)
    assert parse().ga.immigrants == 0 and parse("--immigrants", "0.5").ga.immigrants == 0.5
    # the re-ranking's length: own recipe 8 epochs (or the largest budget, when longer), trial the largest budget
    lengths = lambda *a: (parse(*a).ga.rerank_epochs, parse(*a).ga.rerank_schedule)  # noqa: E731
    assert lengths() == (8, 48) and lengths("--max-budget", "16") == (16, 48) and lengths("--rerank-budget", "2") == (2, 48)
    assert lengths("--rerank-recipe", "trial") == (4, 48) and lengths("--rerank-budget", "64") == (64, 64)
    # the own-recipe re-ranking: decode's augmentation warm-up unless told; a trial-recipe one never has one
    assert parse().ga.rerank_warmup == 8 and parse("--rerank-warmup", "3").ga.rerank_warmup == 3
    assert parse("--rerank-warmup", "0").ga.rerank_warmup == 0
    assert parse("--rerank-recipe", "trial", "--rerank-warmup", "3").ga.rerank_warmup == 0
    # ASHA's grace period: half the one budget unless given; 0 without ASHA
    asha8 = ("--asha", "--epochs-per-trial", "8")
    assert parse(*asha8).asha_grace == 4 and parse(*asha8, "--asha-grace", "2").asha_grace == 2
    assert parse("--asha", "--epochs-per-trial", "3").asha_grace == 1 and parse().asha_grace == 0
    # ...and it is where Ray's scheduler cuts: rungs at the grace and its doublings up to the budget
    milestones = lambda o: sorted(float(m) for m in re.findall(r"Iter ([0-9.]+)", asha_scheduler(o).debug_string()))  # noqa: E731
    assert milestones(parse(*asha8)) == [4, 8] and milestones(parse(*asha8, "--asha-grace", "2")) == [2, 4, 8]
    assert asha_scheduler(parse("--epochs-per-trial", "8")) is None
    # an own-recipe re-ranking trial trains its whole budget and stays out of the rungs
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler
    asha = asha_scheduler(parse(*asha8))
    trials = [SimpleNamespace(trial_id=t, config=c) for t, c in
              (("a", {}), ("b", {}), ("c", {}), ("own", {"recipe": "own"}), ("d", {}))]
    for t in trials:
        asha.on_trial_add(None, t)
    cut = {t.trial_id: asha.on_trial_result(None, t, {"training_iteration": 4, "rank_score": score})
           for t, score in zip(trials, (0.9, 0.8, 0.7, 0.1, 0.1))}
    assert cut["own"] == TrialScheduler.CONTINUE and cut["d"] == TrialScheduler.STOP
    asha.on_trial_complete(None, trials[3], {"training_iteration": 8, "rank_score": 0.1})
    assert "own" not in asha._trial_info
    # a stored run resumes with its own search settings and this command line's machine settings
    stored = json.loads(json.dumps(asdict(parse("--pop", "5", "--objectives", "accuracy,latency"))))
    now = parse("--pop", "9", "--cpus-per-trial", "2")
    opts = EvolveOptions.from_stored(stored, now)
    assert isinstance(opts.ga, GAConfig) and opts.ga.pop == 5 and opts.ga.objectives == ("accuracy", "latency")
    assert opts.cpus_per_trial == 2 and opts.resume
    # ASHA's grace is the stored run's; a run stored before the setting existed ran with Ray's 1
    stored = json.loads(json.dumps(asdict(parse(*asha8, "--asha-grace", "2"))))
    assert EvolveOptions.from_stored(stored, parse(*asha8)).asha_grace == 2
    del stored["asha_grace"]
    assert EvolveOptions.from_stored(stored, parse(*asha8)).asha_grace == 1
    # a FER2013 CSV's test split: a run stored before --fer-test read PrivateTest as its test
    assert stored["data_args"]["fer_test"] == "private"
    del stored["data_args"]["fer_test"]
    assert EvolveOptions.from_stored(stored, parse("--fer-test", "public")).data_args["fer_test"] == "private"
    # the trial recipe: batch 32 without augmentation unless given; a run stored before it had
    # trained each genome at its own batch with the VGG paper's augmentation, and resumes so
    assert (parse().trial_batch, parse().trial_augment) == (32, "none")
    # ...and the batch size of every genome is the trial batch: the search measures no other
    assert parse().ga.space == {"train.batch_size": [0]} and parse("--trial-batch", "64").ga.space == {
        "train.batch_size": [1]} and parse("--trial-batch", "0").ga.space is None
    given = parse("--trial-batch", "0", "--trial-augment", "mild")
    assert (given.trial_batch, given.trial_augment) == (0, "mild")
    kept = EvolveOptions.from_stored(json.loads(json.dumps(asdict(given))), parse())  # the stored recipe wins
    assert (kept.trial_batch, kept.trial_augment) == (0, "mild")
    del stored["trial_batch"], stored["trial_augment"]
    old = EvolveOptions.from_stored(stored, parse())
    assert (old.trial_batch, old.trial_augment) == (0, "vgg")


def test_run_directories_of_another_version_are_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"options": {"ga": {}}}))  # written before versions existed
    (out / "checkpoint.json").write_text(json.dumps({"fernas_evolve_checkpoint": 1}))
    code, err = run_cli(capsys, "--out", str(out), "--resume")
    assert code == 2 and len(err.splitlines()) == 1
    assert "config.json: fernas evolve run version 1, this fernas reads version 3" in err


def test_bad_seed_genome_is_named(capsys, tmp_path):
    bad = tmp_path / "seeds" / "broken.json"
    bad.parent.mkdir()
    bad.write_text('{"fernas_genome": 1, "stages": [')
    code, err = run_cli(capsys, "--out", str(tmp_path / "run"), "--seed-genomes", str(tmp_path / "seeds" / "*.json"))
    assert code == 2 and "broken.json" in err and len(err.splitlines()) == 1


def test_resume_without_or_with_corrupt_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--out", str(out), "--resume")
    assert code == 2 and "no such run directory" in err
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"fernas_evolve_run": CONFIG_VERSION, "options": {"ga": {}}, "first_started": "", "resumes": 0}))
    code, err = run_cli(capsys, "--out", str(out), "--resume")
    assert code == 2 and "checkpoint.json" in err
    (out / "checkpoint.json").write_text("{not json")
    code, err = run_cli(capsys, "--out", str(out), "--resume")
    assert code == 2 and "corrupt" in err


def test_existing_run_is_not_overwritten(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "trials.csv").write_text("precious\n")
    code, err = run_cli(capsys, "--out", str(out))
    assert code == 2 and "already exists and is not empty, and holds no fernas evolve run" in err
    (out / "checkpoint.json").write_text("{}")  # a search's files: --resume is the way on
    code, err = run_cli(capsys, "--out", str(out))
    assert code == 2 and "--resume" in err
    assert (out / "trials.csv").read_text() == "precious\n"


# ---------------------------------------------------------------------------- end to end
def test_evolve_dashboard_kill_resume_penalty(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    docs = [tiny_genome(16), tiny_genome(24), tiny_genome(32, 5), tiny_genome(48)]
    for d in docs:
        G.save_genome(d, seeds / f"{d['name']}.json")
    raise_gid, exit_gid = G.genome_id(docs[2]), G.genome_id(docs[3])
    out = tmp_path / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0",
               FERNAS_FAULT_INJECT=f"{raise_gid}=raise,{exit_gid}=exit")
    args = ["evolve", "--data", "demo:140,70,70", "--out", str(out), "--seed-genomes", str(seeds / "*.json"), "--pop", "6",
            "--generations", "4", "--min-budget", "1", "--max-budget", "2", "--eta", "2", "--rerank-top", "1", "--rerank-seeds", "1",
            "--rerank-budget", "3", "--max-steps-per-epoch", "2",
            "--max-mmacs", "120", "--seed", "1"]

    # 1. start with the dashboard; check its API with and without the token while trials run
    proc = subprocess.Popen([PY, "-m", "fernas", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    children: set[int] = set()
    try:
        deadline = time.time() + 240
        checked_dashboard = False
        while time.time() < deadline and proc.poll() is None:
            time.sleep(1.0)
            children |= descendants(proc.pid)
            cfg_path = out / "config.json"
            if not checked_dashboard and cfg_path.exists():
                cfg = json.loads(cfg_path.read_text())
                url = cfg["ray"]["dashboard_url"]
                assert url.startswith("http://127.0.0.1:")
                token = Path(cfg["ray"]["token_file"]).read_text().strip()
                status, body = get(f"{url}/api/v0/actors?limit=100", token)
                if status == 200 and b"ImplicitFunc" in body:  # the trial workers are listed
                    assert get(f"{url}/api/v0/actors?limit=100", None)[0] == 401
                    assert get(f"{url}/nodes?view=summary", None)[0] == 401
                    assert get(f"{url}/nodes?view=summary", token)[0] == 200
                    checked_dashboard = True
            done = [r for r in read_trials(out) if r["status"] in ("ok", "failed")]
            if checked_dashboard and len(done) >= 3:
                break
        assert proc.poll() is None, "the run ended before it could be killed:\n" + (proc.stdout.read() or "")
        assert checked_dashboard, "the dashboard never listed the trial workers"
        before = {(r["gid"], r["budget"], r["kind"]): r for r in read_trials(out)}
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, at an arbitrary moment
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:  # Ray processes the killed driver started, by their ids
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # 2. resume (without the dashboard: quicker) and finish
    res = subprocess.run([PY, "-m", "fernas", *args, "--resume", "--no-dashboard"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming" in res.stdout
    assert re.search(r"trial slots busy \d+% of the run, training \d+%", res.stdout), res.stdout

    rows = read_trials(out)
    keys = [(r["gid"], r["budget"], r["kind"]) for r in rows]
    assert len(keys) == len(set(keys)), "a genome was trained twice at one budget"
    for key, r in before.items():  # completed trials survive the kill unchanged, never retrained
        if r["status"] in ("ok", "failed"):
            assert {k: rows[keys.index(key)][k] for k in ("trial_id", "val_acc")} == \
                   {k: r[k] for k in ("trial_id", "val_acc")}
    reranked = [r for r in rows if r["kind"] == "rerank"]
    assert len(reranked) == 1 and reranked[0]["budget"] == "3"  # --rerank-budget, not the largest budget (2)
    promotions = [r for r in rows if r["kind"] == "promotion"]
    assert promotions and all(r["budget"] == "2" and r["epochs"] in ("2", "") for r in promotions)
    assert all(float(r["compute"]) > 0 for r in rows if r["status"] == "ok")
    gids = sorted({r["gid"] for r in rows})
    by_gid = {r["gid"]: r for r in rows if r["kind"] == "first"}
    assert by_gid[raise_gid]["status"] == "failed" and "injected fault" in by_gid[raise_gid]["error"]
    assert by_gid[exit_gid]["status"] == "failed" and "worker failed" in by_gid[exit_gid]["error"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(float(r["params"]) > 0 and float(r["macs"]) > 0 and float(r["latency_ms"]) > 0 for r in ok)
    # the default trial recipe: every training at batch 32 (2 steps an epoch), the batch every genome
    # of the run has (the run's space fixes it to the trial batch)
    assert {json.loads(r["genome"])["train"]["batch_size"] for r in ok} == {32}
    epochs = {"first": 1, "promotion": 1}
    assert all(float(r["compute"]) == epochs[r["kind"]] * 2 * 32 * float(r["macs"]) for r in ok if r["kind"] != "rerank")
    # the re-ranking (--rerank-recipe own, the default) trains the genome's own batch size: 3 epochs of
    # at most 2 steps of it on the 140 training images (the remainder dropped)
    for r in reranked:
        bs = json.loads(r["genome"])["train"]["batch_size"]
        assert float(r["compute"]) == 3 * max(1, min(2, 140 // bs)) * min(bs, 140) * float(r["macs"]), (bs, r)

    with (out / "logbook.csv").open() as fh:
        log = list(csv.DictReader(fh))
    assert [int(r["gen"]) for r in log] == [0, 1, 2, 3]
    assert sum(int(r["evals"]) for r in log) == len(gids)
    assert sum(int(r["trials"]) for r in log) == len(rows) - len(reranked)  # re-ranking follows the last generation
    assert "cache_hits" in log[0]
    # the outputs decode takes
    best = G.load_genome(out / "best.json")
    own = [r for r in ok if r["kind"] != "rerank"]
    top = max(int(r["budget"]) for r in own)
    assert best["evolve"]["budget"] == top and best["evolve"]["trial_recipe"] == "batch 32, augmentation none"
    # ...and what ordered it: the one own-recipe re-ranking training (its own trial's is val_acc)
    assert best["evolve"]["rerank"] == {"recipe": "own", "epochs": 3, "trainings": 1,
                                        "mean_val_acc": round(float(reranked[0]["val_acc"]), 4)}
    assert best["evolve"]["gid"] == reranked[0]["gid"]  # the re-ranked genome leads, and the last lines say why
    assert f"(re-ranked: own recipe, 3 epochs, mean {float(reranked[0]['val_acc']):.4f} over 1 training(s))" in res.stdout
    chance = json.loads((out / "config.json").read_text())["options"]["ga"]["chance_level"]
    assert best["evolve"]["gid"] == best_by_the_rule([r for r in own if int(r["budget"]) == top], chance)["gid"]
    hof = sorted((out / "hall_of_fame").glob("*.json"))
    assert hof and all(G.load_genome(p) for p in hof)
    # the seed designs that trained (the two others failed by injection), kept to compare with
    kept = {p.stem: G.load_genome(p) for p in (out / "seed_designs").glob("*.json")}
    assert set(kept) == {docs[0]["name"], docs[1]["name"]}
    assert all(d["evolve"]["gid"] == G.genome_id(d) and d["evolve"]["val_acc"] is not None for d in kept.values())
    assert "seed designs trained: 2 in" in res.stdout
    for name in ("config.json", "checkpoint.json", "pareto.csv", "pareto.png", "progress.png"):
        assert (out / name).stat().st_size > 0, name
    with (out / "pareto.csv").open() as fh:
        marked = [r["gid"] for r in csv.DictReader(fh) if r["best"] == "1"]
    assert marked == [best["evolve"]["gid"]]  # best.json's genome, on the measured front or not
    from fernas.evolve import is_done, read_outcomes

    assert is_done(out / "checkpoint.json") and set(read_outcomes(out / "checkpoint.json")) == set(gids)


def best_by_the_rule(rows: list[dict], chance: float) -> dict:
    """The trials.csv row that ranks first: accuracy with everything up to the chance level
    tied, then the lower validation loss (fernas.fitness.ranking_accuracy)."""
    return max(rows, key=lambda r: (max(float(r["val_acc"]), chance), -float(r["val_loss"] or "inf")))


def test_random_strategy_end_to_end_and_resume(tmp_path):
    """`--strategy random` runs the same code path: trials table, logbook, best.json, resume."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    big_batch = {**tiny_genome(24), "train": {**tiny_genome(24)["train"], "batch_size": 128}}
    for d in (tiny_genome(16), big_batch):  # the second searched (and returned) at the trial batch, 32
        G.save_genome(d, seeds / f"{d['name']}.json")
    out = tmp_path / "run"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    args = ["evolve", "--strategy", "random", "--data", "demo:140,70,70", "--out", str(out),
            "--seed-genomes", str(seeds / "*.json"), "--pop", "4", "--generations", "2", "--epochs-per-trial", "2",
            "--asha", "--rerank-top", "0", "--max-steps-per-epoch", "1", "--max-mmacs", "60", "--seed", "2",
            "--no-dashboard"]
    res = subprocess.run([PY, "-m", "fernas", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "random search" in res.stdout and "left out" not in res.stdout  # the batch-128 seed kept, at 32
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["options"]["ga"]["strategy"] == "random" and cfg["options"]["asha_grace"] == 1
    rows = read_trials(out)
    gids = [r["gid"] for r in rows]
    assert len(gids) == len(set(gids)) == 8  # 4 per generation, all new
    assert {json.loads(r["genome"])["train"]["batch_size"] for r in rows} == {32}  # the trial batch, fixed
    assert {G.genome_id(tiny_genome(16)), G.genome_id(tiny_genome(24))} <= {r["gid"] for r in rows
                                                                           if r["generation"] == "0"}
    assert {r["origin"] for r in rows if r["generation"] == "0"} >= {"seed"}
    assert {r["origin"] for r in rows if r["generation"] == "1"} <= {"space-001", "space-004", "uniform"}
    with (out / "logbook.csv").open() as fh:
        log = list(csv.DictReader(fh))
    assert [int(r["gen"]) for r in log] == [0, 1] and sum(int(r["evals"]) for r in log) == 8
    ok = [r for r in rows if r["status"] in ("ok", "stopped")]  # ASHA may stop some after one epoch
    best = G.load_genome(out / "best.json")
    assert cfg["options"]["ga"]["chance_level"] == pytest.approx(cfg["fitness"]["chance_level"], abs=1e-4)
    assert cfg["options"]["ga"]["chance_level"] > 1 / 7
    assert best["evolve"]["gid"] == best_by_the_rule(ok, cfg["options"]["ga"]["chance_level"])["gid"]
    for name in ("hall_of_fame", "pareto.csv", "progress.png", "checkpoint.json"):
        assert (out / name).exists(), name
    kept = sorted(p.name for p in (out / "seed_designs").glob("*.json"))
    assert len(kept) == 2
    # resume keeps the stored strategy (a GA flag on the command line does not switch it), and its
    # seed designs under another --seed-genomes
    args[args.index("random")] = "ga"
    others = tmp_path / "others"
    others.mkdir()
    G.save_genome(tiny_genome(32), others / "other.json")
    args[args.index(str(seeds / "*.json"))] = str(others / "*.json")
    res = subprocess.run([PY, "-m", "fernas", *args, "--resume"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already complete" in res.stdout and "random search" in res.stdout
    assert read_trials(out) == rows
    assert sorted(p.name for p in (out / "seed_designs").glob("*.json")) == kept


def test_a_resume_names_typed_flags_the_run_does_not_take_by_the_settings_they_set():
    """Which settings each typed flag sets, also for flags whose default the other flags refuse
    (--elite 1 with --pop 2) and flags typed at their default (--trial-batch 32): a resume names
    exactly those whose settings differ from the run's, as they were typed."""
    from dataclasses import replace

    from fernas.cli import build_parser
    from fernas.commands.evolve import options_from_args
    from fernas.commands.evolve_resume_flags import settings_of_typed_flags
    from fernas.search.options import flags_not_taken

    argv = ["evolve", "--out", "x", "--resume", "--pop", "2", "--elite", "1", "--epochs-per-trial", "2", "--asha",
            "--asha-grace", "1", "--trial-batch", "32", "--no-novel-offspring", "--max-trials", "9", "--gpus-per-trial", "0"]
    args = build_parser().parse_args(argv)
    args.argv = argv
    flags = settings_of_typed_flags(args, options_from_args)
    assert set(flags) == {"--pop", "--elite", "--epochs-per-trial", "--asha", "--asha-grace", "--trial-batch",
                          "--no-novel-offspring"}  # not the budget or the machine's settings, which a resume takes
    assert all(flags.values()), flags
    given = options_from_args(args)
    assert flags_not_taken(flags, given, given) == []  # the run's own values typed again: nothing to say
    kept = replace(given, trial_batch=0, ga=replace(given.ga, pop=4, novel_offspring=True))
    assert set(flags_not_taken(flags, given, kept)) == {"--pop", "--trial-batch", "--no-novel-offspring"}

    def options(*typed):
        argv = ["evolve", "--out", "x", "--resume", "--epochs-per-trial", "1", *typed]
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args, options_from_args(args)

    # --rerank-recipe moves the re-ranking's budget, which --epochs-per-trial sets too: only the
    # flag whose own setting differs is named
    args, given = options("--rerank-recipe", "trial")
    flags = settings_of_typed_flags(args, options_from_args)
    assert flags_not_taken(flags, given, options()[1]) == ["--rerank-recipe"]
