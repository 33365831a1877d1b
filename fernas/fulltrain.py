"""`fernas decode GENOME.json --train`: the full training protocol of seeds 000/002.

Khaireddin & Chen (VGG paper): train for 300 epochs with the genome's recipe (the paper's
best: SGD with Nesterov momentum 0.9, lr 0.01, weight decay 1e-4, reduce-on-plateau by 0.75
after 5 epochs without validation gain), training on the ten crops of every augmented image
as the paper's public code does (`--train-crops 1`: one random crop, ten times cheaper);
then reload the best weights and fine-tune for 50 epochs at lr 1e-4 with cosine annealing
(on train+val with `--merge-val`, the paper's 73.28 % setting); then test the selected
weights on the test split with ten-crop averaging.  Unlike the paper's code, the test uses the
best weights (not the last epoch) and `--resume` restores optimizer and scheduler state.

A run directory receives genome.json, config.json, history.csv, model.pt, metrics.json,
curves.png, confusion.png, saliency.png and inference.torchscript.pt (ten-crop inside).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import platform
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from fernas import __version__
from fernas.dataset import Dataset, Split
from fernas.errors import RunDirError, UserError
from fernas.io import atomic_write_json, atomic_write_text, run_dir_lock

HISTORY_FIELDS = ["phase", "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
EXPORT_NAME = "inference.torchscript.pt"
FINE_TUNE_LR = 1e-4  # seed 002: "train for a final 50 epochs using an initial learning rate of 0.0001"
RUN_MARKERS = ("genome.json", "config.json", "history.csv", "model.pt", "metrics.json",
               "checkpoint-train.pt", "checkpoint-finetune.pt")


def _add(group, parser, *flags, **kw) -> None:
    """Add an option unless the host parser (decode) already has one of these flags."""
    if any(f in parser._option_string_actions for f in flags):
        return
    group.add_argument(*flags, **kw)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `decode --train` (defaults are the paper's protocol)."""
    g = parser.add_argument_group("Training (with --train): protocol of seeds 000/002")
    _add(g, parser, "--train", action="store_true",
         help="fully train each genome, fine-tune, test with ten-crop, write a run directory")
    from fernas.commands.common import add_data_arguments

    if "--data" not in parser._option_string_actions:
        add_data_arguments(parser)
    _add(g, parser, "--epochs", type=int, default=300, help="training epochs")
    _add(g, parser, "--fine-tune-epochs", type=int, default=50,
         help="epochs of fine-tuning from the best weights at lr 1e-4 with cosine annealing (0: none)")
    _add(g, parser, "--train-crops", type=int, choices=(1, 10), default=10,
         help="crops per training image and step: 10 = all ten crops (the paper's code), 1 = one random crop")
    _add(g, parser, "--val-crops", type=int, choices=(1, 10), default=None,
         help="crops per validation image; unset: as --train-crops")
    _add(g, parser, "--merge-val", action="store_true",
         help="fine-tune on train+val (the paper's best setting); the last fine-tuned weights are tested")
    _add(g, parser, "--augment", choices=("vgg", "mild", "none"), default="vgg",
         help="training augmentation: vgg (seeds 000/002), mild (seeds 001/004), none")
    _add(g, parser, "--batch-size", type=int, default=None, help="images per step; unset: the genome's batch size")
    _add(g, parser, "--out", default=None,
         help="run directory (several genomes: one sub-directory each); unset: a new directory under runs/")
    _add(g, parser, "--seed", type=int, default=0, help="seeds python, numpy and torch")
    _add(g, parser, "--device", default="auto", help="auto, cpu or cuda")
    _add(g, parser, "--precision", choices=("auto", "bf16", "fp32"), default="auto",
         help="auto: bf16 autocast on CUDA and on CPUs with native bf16, else fp32")
    _add(g, parser, "--resume", action="store_true",
         help="continue the run in --out from its last checkpoint")


# --------------------------------------------------------------------------- helpers



def _merged(data: Dataset) -> Dataset:
    """train+val as the training split (val kept for reporting), for --merge-val."""
    soft = None
    if data.train.soft is not None and data.val.soft is not None:
        soft = torch.cat([data.train.soft, data.val.soft])
    train = Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]), soft)
    return Dataset(data.classes, train, data.val, data.test, data.source, data.skipped, dict(data.info))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "genome"


def _plan_dirs(args, docs: list[dict]) -> tuple[Path | None, list[Path]]:
    """(base directory for a comparison, one run directory per genome)."""
    names, seen = [], {}
    for d in docs:
        n = _slug(d.get("name", "genome"))
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    if args.out is None:
        if args.resume:
            raise UserError("--resume needs --out DIR, the run directory to continue")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        if len(docs) == 1:
            return None, [Path("runs") / f"{stamp}-{names[0]}"]
        base = Path("runs") / stamp
        return base, [base / n for n in names]
    out = Path(args.out)
    if len(docs) == 1:
        return None, [out]
    return out, [out / n for n in names]


def _holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in RUN_MARKERS)


def _check_dir(path: Path, doc: dict, resume: bool) -> None:
    """Refuse to overwrite another run; on --resume require a run of the same genome."""
    from fernas.genome import genome_id, load_genome

    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory")
    if not resume:
        if _holds_run(path):
            raise RunDirError(f"{path}: holds another run; pass --resume to continue it, or choose another --out")
        return
    if not _holds_run(path):
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
    from fernas.train import load_checkpoint

    for ck in ("checkpoint-train.pt", "checkpoint-finetune.pt"):  # fail before anything is written
        if (path / ck).exists():
            load_checkpoint(path / ck)


def _versions() -> dict:
    import numpy
    import torchvision

    return {"fernas": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda, "platform": platform.platform()}


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} torch threads)"


def _write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _jsonable(args) -> dict:
    return {k: v for k, v in vars(args).items() if k != "func" and not callable(v)}


# --------------------------------------------------------------------------- one run


def train_one(args, doc: dict, genome_path: str, run_dir: Path, data: Dataset, dev: torch.device) -> dict:
    """The protocol for one genome into run_dir; returns its metrics dict."""
    from fernas.evaluate import evaluate_model, export_model, save_model_file
    from fernas.genome import genome_id, save_genome
    from fernas.model import summarize
    from fernas.report import write_plots
    from fernas.train import default_amp, load_checkpoint, train_genome

    run_dir.mkdir(parents=True, exist_ok=True)
    gid = genome_id(doc)
    name = doc.get("name", "genome")
    train_crops = args.train_crops
    val_crops = args.val_crops or train_crops
    summary = summarize(doc, input_size=40, num_classes=data.num_classes)
    config_path = run_dir / "config.json"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if args.resume and config_path.exists():
        config = json.loads(config_path.read_text())
        config.setdefault("resumed", []).append(now)
    else:
        save_genome(doc, run_dir / "genome.json")
        config = {
            "command": "fernas decode --train", "argv": sys.argv[1:], "args": _jsonable(args),
            "genome_file": str(genome_path), "genome_name": name, "genome_id": gid,
            "seed": args.seed, "device": str(dev), "device_name": _device_name(dev),
            "amp_bf16": {"auto": default_amp(dev), "bf16": True, "fp32": False}[getattr(args, "precision", "auto")], "torch_threads": torch.get_num_threads(),
            "train_crops": train_crops, "val_crops": val_crops, "fine_tune_lr": FINE_TUNE_LR,
            "versions": _versions(),
            "data": {"source": data.source, "classes": data.classes, "train": len(data.train),
                     "val": len(data.val), "test": len(data.test), "skipped": data.skipped,
                     "info": data.info},
            "params": summary["params"], "macs": summary["macs"], "repairs": summary["repairs"],
            "started": now,
        }
    atomic_write_json(config_path, config)

    print(f"== {name} (id {gid}): {summary['params']:,} params, {summary['macs'] / 1e6:.1f} M MACs; "
          f"{args.epochs}+{args.fine_tune_epochs} epochs, {train_crops} crop(s)/image, device {dev}; "
          f"run directory {run_dir}", file=sys.stderr, flush=True)

    rows: list[dict] = []

    def on_epoch(record: dict) -> None:
        rows.append(record)
        _write_history(run_dir / "history.csv", rows)

    def prior_history(ck_path: Path) -> list[dict]:
        if args.resume and ck_path.exists():
            return list(load_checkpoint(ck_path)["history"])
        return []

    amp = {"auto": None, "bf16": True, "fp32": False}[getattr(args, "precision", "auto")]
    amp = default_amp(dev) if amp is None else amp
    common = dict(device=dev, amp=amp, seed=args.seed, train_crops=train_crops, augment=args.augment,
                  batch_size=args.batch_size, val_crops=val_crops, progress=True, on_epoch=on_epoch,
                  # GPU epochs take seconds: a checkpoint at most every 30 s (CPU: every epoch)
                  checkpoint_min_interval_s=30.0 if dev.type == "cuda" else 0.0)
    ck1 = run_dir / "checkpoint-train.pt"
    rows.extend(prior_history(ck1))
    res1 = train_genome(doc, data, epochs=args.epochs, checkpoint_path=ck1,
                        resume=args.resume and ck1.exists(), phase="train", **common)
    rows[:] = list(res1.history)
    final, selected = res1, f"train epoch {res1.best_epoch}"
    if args.fine_tune_epochs > 0:
        ck2 = run_dir / "checkpoint-finetune.pt"
        rows.extend(prior_history(ck2))
        ft_data = _merged(data) if args.merge_val else data
        res2 = train_genome(doc, ft_data, epochs=args.fine_tune_epochs, lr=FINE_TUNE_LR, scheduler="cosine",
                            init_state=res1.best_state, checkpoint_path=ck2,
                            resume=args.resume and ck2.exists(), phase="finetune",
                            select="last" if args.merge_val else "best", **common)
        rows[:] = list(res1.history) + list(res2.history)
        # On the plain split fine-tuning must beat the weights it started from on validation;
        # with --merge-val validation is part of training, so the fine-tuned weights are kept.
        if args.merge_val or res2.best_val_acc >= res1.best_val_acc or args.epochs == 0:
            final, selected = res2, f"finetune epoch {res2.best_epoch}"
    _write_history(run_dir / "history.csv", rows)

    model = final.model.eval()
    batch_crops = 4096 if dev.type == "cuda" else 512
    print(f"  testing on {len(data.test)} images (ten-crop) ...", file=sys.stderr, flush=True)
    m, probs = evaluate_model(model, data.test, data.classes, device=dev, amp=amp, batch_crops=batch_crops,
                              return_probs=True)
    metrics = {
        "genome": name, "genome_id": gid,
        "test_accuracy_tencrop": m["test_accuracy_tencrop"], "test_accuracy_single": m["test_accuracy_single"],
        "macro_f1": m["macro_f1"], "test_loss_tencrop": m["test_loss_tencrop"], "n_test": m["n"],
        "per_class": m["per_class"], "confusion": m["confusion"], "classes": data.classes,
        "params": summary["params"], "macs": summary["macs"],
        "best_val_acc": {"train": res1.best_val_acc, **({"finetune": final.best_val_acc}
                                                       if final is not res1 else {})},
        "selected_weights": selected, "merge_val": bool(args.merge_val),
        "train_crops": train_crops, "epochs": args.epochs, "fine_tune_epochs": args.fine_tune_epochs,
        "train_seconds": sum(r["seconds"] for r in rows), "device": str(dev),
    }
    save_model_file(run_dir / "model.pt", doc, final.best_state,
                    {"num_classes": data.num_classes, "classes": list(data.classes), "genome_id": gid,
                     "test_accuracy_tencrop": metrics["test_accuracy_tencrop"], "fernas_version": __version__})
    export_model(model, run_dir / EXPORT_NAME)
    model.to(dev)
    write_plots(run_dir, rows, metrics, model, data.test, probs, data.classes, title=name)
    atomic_write_json(run_dir / "metrics.json", metrics)
    # The run is complete: the checkpoints (model + optimizer + best weights) are no longer
    # needed and are the largest files of a run.
    for ck in (ck1, run_dir / "checkpoint-finetune.pt"):
        ck.unlink(missing_ok=True)
    print(f"  {name}: ten-crop test accuracy {metrics['test_accuracy_tencrop']:.4f} "
          f"(single crop {metrics['test_accuracy_single']:.4f}, macro F1 {metrics['macro_f1']:.4f}) "
          f"-> {run_dir}", flush=True)
    return metrics


# Settings that define a run: on --resume they come from the run's config.json, so a resumed
# run trains on the same data with the same protocol whatever the command line says now.
RESUME_KEYS = ("data", "labels", "skip_bad", "data_seed", "epochs", "fine_tune_epochs", "train_crops",
               "val_crops", "merge_val", "augment", "batch_size", "seed", "precision")


def _restore_run_settings(args, dirs: list[Path]) -> None:
    for d in dirs:
        cfg_path = d / "config.json"
        if not cfg_path.exists():
            continue
        try:
            stored = json.loads(cfg_path.read_text())["args"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"{cfg_path}: unreadable run configuration ({exc}); cannot resume") from None
        changed = [k for k in RESUME_KEYS if k in stored and getattr(args, k, None) != stored[k]]
        for k in RESUME_KEYS:
            if k in stored:
                setattr(args, k, stored[k])
        if changed:
            print(f"resuming {d} with its stored settings ({', '.join('--' + k.replace('_', '-') for k in changed)} "
                  f"from config.json, not from this command line)", file=sys.stderr)
        return  # one set of settings serves every genome of a multi-genome run


def run_train(args, genome_paths: list[str]) -> int:
    """Train every genome in turn; with several, end with a comparison table (and CSV)."""
    from fernas.genome import load_genome
    from fernas.train import resolve_device

    docs = [load_genome(p) for p in genome_paths]
    for flag in ("epochs", "fine_tune_epochs"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    base, dirs = _plan_dirs(args, docs)
    if args.resume:
        _restore_run_settings(args, dirs)
    dev = resolve_device(args.device)
    with contextlib.ExitStack() as locks:
        return _train_all(args, genome_paths, docs, base, dirs, dev, locks)


def _train_all(args, genome_paths: list[str], docs: list[dict], base: Path | None, dirs: list[Path], dev,
               locks: contextlib.ExitStack) -> int:
    from fernas.commands.common import dataset_from_args

    for d in dirs:  # held until the end: a second process on one of these directories is refused
        if d.is_dir() or not d.exists():  # (a file in the way: _check_dir says so)
            locks.enter_context(run_dir_lock(d))
    finished = []
    for doc, d in zip(docs, dirs):  # check every directory (under its lock) before training anything
        if args.resume and (d / "metrics.json").exists() and not (d / "checkpoint-train.pt").exists():
            finished.append(d)
            continue
        _check_dir(d, doc, args.resume)
    data = dataset_from_args(args)
    t0 = time.perf_counter()
    results = []
    for path, doc, d in zip(genome_paths, docs, dirs):
        if d in finished:
            print(f"{d}: run already complete (metrics.json); nothing to resume", file=sys.stderr)
            results.append((doc, d, json.loads((d / "metrics.json").read_text())))
            continue
        results.append((doc, d, train_one(args, doc, path, d, data, dev)))
    if len(results) > 1:
        rows = [{"genome": m["genome"], "test_accuracy_tencrop": m["test_accuracy_tencrop"],
                 "test_accuracy_single": m["test_accuracy_single"], "macro_f1": m["macro_f1"],
                 "params": m["params"], "macs": m["macs"], "run_dir": str(d)} for _, d, m in results]
        rows.sort(key=lambda r: -r["test_accuracy_tencrop"])
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(base / "comparison.csv", buf.getvalue())
        width = max(len(r["genome"]) for r in rows)
        print(f"\n{'genome'.ljust(width)}  ten-crop  single  macro-F1      params        MACs")
        for r in rows:
            print(f"{r['genome'].ljust(width)}  {r['test_accuracy_tencrop']:8.4f}  {r['test_accuracy_single']:6.4f}  "
                  f"{r['macro_f1']:8.4f}  {r['params']:10,}  {r['macs']:10,}")
        print(f"comparison written to {base / 'comparison.csv'} ({time.perf_counter() - t0:.0f} s)")
    return 0
