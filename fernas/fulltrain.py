"""The full training protocol of seeds 000/002, one run directory per genome.

Khaireddin & Chen (VGG paper): train for 300 epochs with the genome's recipe (the paper's
best: SGD with Nesterov momentum 0.9, lr 0.01, weight decay 1e-4, reduce-on-plateau by 0.75
after 5 epochs without validation gain), training on the ten crops of every augmented image
as the paper's public code does (`train_crops=1`: one random crop, ten times cheaper); then
reload the best weights and fine-tune for 50 epochs at lr 1e-4 with cosine annealing (on
train+val with `merge_val`, the paper's 73.28 % setting, on PublicTest); then test the selected weights on
the test split with ten-crop averaging.  Unlike the paper's code, the test uses the best
weights (not the last epoch) and a resumed run restores optimizer and scheduler state.

A run directory receives genome.json, config.json, history.csv, model.pt, metrics.json,
curves.png, confusion.png, saliency.png, model-tencrop.onnx (ten-crop inside, checked against PyTorch)
and report.html.
The settings come as a `ProtocolConfig`; the command-line flags that fill it live in
`fernas.commands.train` (`fernas train`, `fernas decode --train`).  Several genomes in one
command (a comparison, or a race) are `fernas.train_several`'s.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from fernas import __version__
from fernas.dataset import CROP_SIZE, Dataset, Split
from fernas.device import amp_for, device_name, eval_batch_size, resolve_device
from fernas.errors import RunDirError, RunExistsError, UserError
from fernas.io import atomic_write_csv, atomic_write_json, best_effort, read_versioned_json
from fernas.protocol import AUGMENT_WARMUP, RUN_VERSION, ProtocolConfig
from fernas.runinfo import refuse_other_data, timestamp
from fernas.train import TrainConfig, train_genome
from fernas.train_checkpoint import load_checkpoint

HISTORY_FIELDS = ["phase", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
EXPORT_NAME = "model-tencrop.onnx"  # the ten-crop ONNX program (`fernas export` writes others)
FINE_TUNE_LR = 1e-4  # seed 002: "train for a final 50 epochs using an initial learning rate of 0.0001"
CHECKPOINTS = ("checkpoint-train.pt", "checkpoint-finetune.pt")
RUN_MARKERS = ("genome.json", "config.json", "history.csv", "model.pt", "metrics.json") + CHECKPOINTS
# GPU epochs take seconds and a VGG checkpoint is ~360 MB: at most one every 30 s there.
GPU_CHECKPOINT_INTERVAL_S = 30.0


# --------------------------------------------------------------------------- run directories


def _merged(data: Dataset) -> Dataset:
    """train+val as the training split (val kept for reporting), for merge_val."""
    soft = None
    if data.train.soft is not None and data.val.soft is not None:
        soft = torch.cat([data.train.soft, data.val.soft])
    train = Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]), soft)
    return Dataset(data.classes, train, data.val, data.test, data.source, data.skipped, dict(data.info))


def holds_run(path: Path) -> bool:
    """Whether a directory holds a training run (any of its files or checkpoints)."""
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def check_run_dir(path: Path, doc: dict, resume: bool) -> None:
    """Refuse to overwrite another run (RunExistsError); to resume, require a run of the same genome."""
    from fernas.genome import genome_id, load_genome

    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory")
    if not resume:
        if holds_run(path):
            raise RunExistsError(path)
        from fernas.io import LOCK_NAME

        if path.is_dir() and any(p.name != LOCK_NAME for p in path.iterdir()):  # a dataset, a user's notes
            raise RunDirError(f"{path}: exists, is not empty and holds no fernas run; choose another --out")
        return
    if not holds_run(path):
        raise RunDirError(f"{path}: no run to resume (no genome.json or checkpoint there)")
    gpath = path / "genome.json"
    if gpath.exists():
        try:
            old = load_genome(gpath)
        except UserError as exc:
            raise RunDirError(f"{path}: cannot resume, its genome.json is unreadable ({exc})") from None
        if genome_id(old) != genome_id(doc):
            raise RunDirError(f"{path}: holds a run of genome {old.get('name')!r} (id {genome_id(old)}), "
                              f"not of {doc.get('name')!r} (id {genome_id(doc)})")
    for ck in CHECKPOINTS:  # fail before anything is written
        if (path / ck).exists():
            load_checkpoint(path / ck)


def is_complete(run_dir: Path) -> bool:
    """Whether a run directory holds a finished run: metrics.json, and the training checkpoint
    gone (`run_protocol` deletes it once the run is complete)."""
    return (Path(run_dir) / "metrics.json").exists() and not (Path(run_dir) / CHECKPOINTS[0]).exists()


def stored_metrics(run_dir: Path) -> dict:
    """A complete run's metrics.json; unreadable (damaged by hand) is a RunDirError naming it."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise RunDirError(f"{path}: unreadable metrics of a finished run ({exc})") from None
    if not isinstance(metrics, dict):
        raise RunDirError(f"{path}: unreadable metrics of a finished run (not a JSON object)")
    return metrics


def stored_settings(run_dir: Path) -> dict | None:
    """The settings ("args") a run directory's config.json records; None without config.json.
    An unreadable file or a run of another version is a RunDirError naming the file."""
    cfg_path = Path(run_dir) / "config.json"
    if not cfg_path.exists():
        return None
    config = read_versioned_json(cfg_path, "fernas_train_run", RUN_VERSION, "training run")
    if not isinstance(config.get("args"), dict):
        raise RunDirError(f"{cfg_path}: unreadable run configuration (no args); cannot resume")
    return config["args"]


# --------------------------------------------------------------------------- one run


def _write_config(run_dir: Path, doc: dict, cfg: ProtocolConfig, dev, data: Dataset, summary: dict,
                  resume: bool, genome_file, invocation: dict | None, resume_key: str = "resumed") -> None:
    """config.json: what the run is (genome, settings, data, machine); a resume appends its date
    under `resume_key` (a race's winner going on from its race epochs: "continued_after_race",
    so that a run nobody resumed does not say it was)."""
    from fernas.genome import genome_id, save_genome
    from fernas.runinfo import versions

    config_path = run_dir / "config.json"
    now = timestamp()
    if resume and config_path.exists():
        config = json.loads(config_path.read_text())
        refuse_other_data(config.get("data") or {}, ("train", "val", "test"), data.classes,
                          [len(data.train), len(data.val), len(data.test)], data.source, run_dir)
        config.setdefault(resume_key, []).append(now)
        atomic_write_json(config_path, config)
        return
    save_genome(doc, run_dir / "genome.json")
    inv = invocation or {}
    atomic_write_json(config_path, {
        "fernas_train_run": RUN_VERSION,
        "command": inv.get("command", "fernas.fulltrain"), "argv": inv.get("argv", []),
        "args": inv.get("args", {**asdict(cfg), "device": str(cfg.device)}),
        "genome_file": str(genome_file), "genome_name": doc.get("name", "genome"), "genome_id": genome_id(doc),
        "seed": cfg.seed, "device": str(dev), "device_name": device_name(dev),
        "amp_bf16": amp_for(cfg.precision, dev), "torch_threads": torch.get_num_threads(),
        "train_crops": cfg.train_crops, "val_crops": cfg.val_crops or cfg.train_crops,
        "fine_tune_lr": FINE_TUNE_LR,
        "versions": {**versions("torch", "torchvision", "numpy"), "cuda": torch.version.cuda},
        "data": {"source": data.source, "classes": data.classes, "train": len(data.train),
                 "val": len(data.val), "test": len(data.test), "skipped": data.skipped, "info": data.info},
        "params": summary["params"], "macs": summary["macs"], "repairs": summary["repairs"],
        "started": now,
    })


def _training_phase(cfg: ProtocolConfig, dev, stop_after: int | None = None) -> TrainConfig:
    """The trainer's settings for the protocol's training phase (stop_after: end after that
    epoch of the same schedule, to be continued from the checkpoint: a race's start)."""
    return TrainConfig(epochs=cfg.epochs, stop_after_epoch=stop_after, seed=cfg.seed, device=dev,
                       train_crops=cfg.train_crops, augment=cfg.augment, augment_warmup=cfg.augment_warmup,
                       val_crops=cfg.val_crops or cfg.train_crops,
                       amp=amp_for(cfg.precision, dev), batch_size=cfg.batch_size,
                       checkpoint_min_interval_s=GPU_CHECKPOINT_INTERVAL_S if dev.type == "cuda" else 0.0)


def train_start(doc: dict, data: Dataset, cfg: ProtocolConfig, run_dir, epochs: int, *, resume: bool = False,
                genome_file=None, invocation: dict | None = None) -> list[dict]:
    """The first `epochs` epochs of the protocol's training phase into run_dir (config.json,
    history.csv, the training checkpoint), so that `run_protocol(..., resume=True)` continues
    them as one uninterrupted run; returns the history.  A checkpoint already at `epochs`, or a
    complete run (metrics.json, finished by hand after a race), is read, not trained again."""
    run_dir = Path(run_dir)
    if resume and is_complete(run_dir):
        with (run_dir / "history.csv").open(newline="") as fh:
            return list(csv.DictReader(fh))
    dev = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run_dir, doc, cfg, dev, data, _announce(doc, data, cfg, dev, run_dir, f"first {epochs} of "),
                  resume, genome_file, invocation)
    ck = run_dir / CHECKPOINTS[0]
    rows: list[dict] = []

    def on_epoch(record: dict) -> None:
        rows.append(record)
        atomic_write_csv(run_dir / "history.csv", HISTORY_FIELDS, rows)

    res = train_genome(doc, data, _training_phase(cfg, dev, stop_after=epochs), checkpoint_path=ck,
                       resume=resume and ck.exists(), on_epoch=on_epoch, progress=True, on_restore=rows.extend)
    atomic_write_csv(run_dir / "history.csv", HISTORY_FIELDS, res.history)
    return list(res.history)


def _announce(doc: dict, data: Dataset, cfg: ProtocolConfig, dev, run_dir: Path, part: str = "") -> dict:
    """The run's header line on stderr (`part`: "first N of " for a race's start); returns the
    genome's summary (parameters, multiply-adds)."""
    from fernas.genome import genome_id
    from fernas.model import summarize

    summary = summarize(doc, input_size=CROP_SIZE, num_classes=data.num_classes)
    print(f"== {doc.get('name', 'genome')} (id {genome_id(doc)}): {summary['params']:,} params, "
          f"{summary['macs'] / 1e6:.1f} M MACs; {part}{cfg.epochs}+{cfg.fine_tune_epochs} epochs, "
          f"{cfg.train_crops} crop(s)/image{_warmup_text(cfg)}, device {dev}; run directory {run_dir}",
          file=sys.stderr, flush=True)
    return summary


def _train_phases(doc: dict, data: Dataset, cfg: ProtocolConfig, dev, run_dir: Path, resume: bool):
    """Training, then fine-tuning from its best weights; history.csv after every epoch.
    Returns (training result, result whose weights are tested, "phase epoch N", history rows)."""
    rows: list[dict] = []

    def on_epoch(record: dict) -> None:
        rows.append(record)
        atomic_write_csv(run_dir / "history.csv", HISTORY_FIELDS, rows)

    def phase(tc: TrainConfig, ck: Path, phase_data: Dataset, **kw):
        return train_genome(doc, phase_data, tc, checkpoint_path=ck, resume=resume and ck.exists(), on_epoch=on_epoch,
                            progress=True, on_restore=rows.extend, **kw)

    tc = _training_phase(cfg, dev)
    res1 = phase(tc, run_dir / CHECKPOINTS[0], data)
    rows[:] = list(res1.history)
    final, selected = res1, f"train epoch {res1.best_epoch}"
    if cfg.fine_tune_epochs > 0:
        # fine-tuning starts from trained weights: the full augmentation from its first step
        ft = replace(tc, epochs=cfg.fine_tune_epochs, lr=FINE_TUNE_LR, scheduler="cosine", phase="finetune",
                     augment_warmup=0, select="last" if cfg.merge_val else "best")
        res2 = phase(ft, run_dir / CHECKPOINTS[1], _merged(data) if cfg.merge_val else data,
                     init_state=res1.best_state)
        rows[:] = list(res1.history) + list(res2.history)
        # On the plain split fine-tuning must beat the weights it started from on validation;
        # with merge_val validation is part of training, so the fine-tuned weights are kept.
        if cfg.merge_val or res2.best_val_acc >= res1.best_val_acc or cfg.epochs == 0:
            final, selected = res2, f"finetune epoch {res2.best_epoch}"
    atomic_write_csv(run_dir / "history.csv", HISTORY_FIELDS, rows)
    return res1, final, selected, rows


def _test_and_save(doc: dict, data: Dataset, cfg: ProtocolConfig, dev, run_dir: Path, summary: dict,
                   phases) -> dict:
    """Ten-crop test of the selected weights; model.pt, the export, the plots and metrics.json."""
    from fernas.evaluate import evaluate_model
    from fernas.genome import genome_id
    from fernas.export import export_onnx
    from fernas.modelfile import save_model_file
    from fernas.report import write_plots

    res1, final, selected, rows = phases
    name, gid = doc.get("name", "genome"), genome_id(doc)
    model = final.model.eval()
    usage = (data.info or {}).get("test_usage")  # a FER2013 CSV's: which of its held-out splits
    print(f"  testing on {len(data.test)} images ({f'{usage}, ' if usage else ''}ten-crop) ...",
          file=sys.stderr, flush=True)
    tested_in = "bf16" if amp_for(cfg.precision, dev) else "fp32"  # what `auto` chose here, for evaluate and predict
    m, probs = evaluate_model(model, data.test, data.classes, device=dev, amp=tested_in == "bf16",
                              batch_crops=eval_batch_size(dev, doc), return_probs=True)
    metrics = {
        "genome": name, "genome_id": gid,
        "test_accuracy_tencrop": m["test_accuracy_tencrop"], "test_accuracy_single": m["test_accuracy_single"],
        "macro_f1": m["macro_f1"], "test_loss_tencrop": m["test_loss_tencrop"], "n_test": m["n"],
        **({"test_usage": usage} if usage else {}),  # a FER2013 CSV's: which held-out split was tested
        "per_class": m["per_class"], "confusion": m["confusion"], "classes": data.classes,
        "params": summary["params"], "macs": summary["macs"],
        "best_val_acc": {"train": res1.best_val_acc, **({"finetune": final.best_val_acc}
                                                       if final is not res1 else {})},
        "selected_weights": selected, "merge_val": bool(cfg.merge_val), "precision": tested_in,
        "train_crops": cfg.train_crops, "epochs": cfg.epochs, "fine_tune_epochs": cfg.fine_tune_epochs,
        "train_seconds": sum(r["seconds"] for r in rows), "device": str(dev),
        # the unit of trials.csv's `compute`: a decode's cost beside a search's
        "train_inputs": (inputs := sum(int(r["inputs"]) for r in rows)),
        "train_compute": inputs * int(summary["macs"]),
    }
    save_model_file(run_dir / "model.pt", doc, final.best_state,
                    {"num_classes": data.num_classes, "classes": list(data.classes), "genome_id": gid,
                     **({"test_usage": usage} if usage else {}), "precision": tested_in,
                     "test_accuracy_tencrop": metrics["test_accuracy_tencrop"], "fernas_version": __version__})
    write_plots(run_dir, rows, metrics, model, data.test, probs, data.classes, title=name)
    atomic_write_json(run_dir / "metrics.json", metrics)  # the run is complete from here on
    from fernas.html_report import write_report

    best_effort(str(run_dir / EXPORT_NAME), f"fernas export {run_dir / 'model.pt'} --ten-crop writes it",
                export_onnx, model, run_dir / EXPORT_NAME, ten_crop=True, classes=list(data.classes),
                meta={"genome": name, "genome_id": gid, "fernas_version": __version__})
    model.to(dev)  # the export ran on the CPU
    best_effort(str(run_dir / "report.html"), f"fernas report {run_dir} writes it", write_report, run_dir,
                own_lock=True)
    return metrics


def run_protocol(doc: dict, data: Dataset, cfg: ProtocolConfig, run_dir, *, resume: bool = False,
                 genome_file=None, invocation: dict | None = None, resume_key: str = "resumed") -> dict:
    """The protocol for one genome into run_dir (checked and locked by the caller); returns its
    metrics dict.  invocation: {"command", "argv", "args"} recorded in config.json; resume_key:
    the config.json list a resume's date goes to (`_write_config`)."""
    run_dir = Path(run_dir)
    dev = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    name = doc.get("name", "genome")
    summary = _announce(doc, data, cfg, dev, run_dir)
    _write_config(run_dir, doc, cfg, dev, data, summary, resume, genome_file, invocation, resume_key)
    phases = _train_phases(doc, data, cfg, dev, run_dir, resume)
    metrics = _test_and_save(doc, data, cfg, dev, run_dir, summary, phases)
    # The run is complete: the checkpoints (model + optimizer + best weights) are no longer
    # needed and are the largest files of a run.
    for ck in CHECKPOINTS:
        (run_dir / ck).unlink(missing_ok=True)
    print(f"  {name}: ten-crop test accuracy {metrics['test_accuracy_tencrop']:.4f} "
          f"(single crop {metrics['test_accuracy_single']:.4f}, macro F1 {metrics['macro_f1']:.4f}) "
          f"-> {run_dir}", flush=True)
    if centre_crop_only(cfg):
        print(f"  {name}: trained on the centre crop alone (--augment none, one crop per image): nine of the ten "
              "test crops are shifted or mirrored views it never saw; its single-crop accuracy is the one "
              "to compare", flush=True)
    return metrics


def _warmup_text(cfg: ProtocolConfig) -> str:
    """", augmentation warm-up N epochs" where one applies (saying so when the training ends
    inside it), else ""."""
    if not (cfg.augment_warmup and cfg.augment != "none" and cfg.epochs):
        return ""
    # epoch e (0-based) draws at e / W: the preset is reached at epoch W + 1 (1-based)
    short = " (the training ends inside it)" if cfg.epochs <= cfg.augment_warmup else ""
    return f", augmentation warm-up {cfg.augment_warmup} epochs{short}"


def centre_crop_only(cfg: ProtocolConfig) -> bool:
    """`protocol.centre_crop_only` of a run's settings."""
    from fernas.protocol import centre_crop_only as of_settings

    return of_settings(cfg.augment, cfg.train_crops)
