"""`fernas evaluate MODEL.pt`: ten-crop test of a saved model on a dataset, metrics and plots."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="test a saved model (ten-crop) on a dataset; write metrics and plots",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL.pt", help="a model.pt written by `fernas decode --train`")
    from fernas.commands.common import add_data_arguments, add_inference_arguments

    add_data_arguments(p)
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="split to evaluate")
    p.add_argument("--out", default=None,
                   help="directory for metrics.json, confusion.png, saliency.png (default: a new one under runs/)"
                        "%(default).0s")  # printed as nothing: no "(default: None)" after it
    add_inference_arguments(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fernas.commands.common import dataset_from_args, inference_amp, model_from_args
    from fernas.dataset import CROP_SIZE
    from fernas.device import eval_batch_size
    from fernas.errors import RunDirError, UserError
    from fernas.evaluate import evaluate_model
    from fernas.io import atomic_write_json
    from fernas.model import summarize
    from fernas.report import write_plots

    dev, doc, model, meta = model_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"evaluate-{datetime.now():%Y%m%d-%H%M%S}"
    _check_out_dir(out)
    if (out / "metrics.json").exists():
        raise RunDirError(f"{out}: already holds metrics.json; choose another --out")
    data = dataset_from_args(args)
    if list(meta.get("classes", data.classes)) != list(data.classes):
        raise UserError(f"{args.model}: model classes {meta.get('classes')} differ from the dataset's {data.classes}")
    split = data.splits()[args.split]
    if len(split) == 0:
        raise UserError(f"--split {args.split}: the dataset's {args.split} split is empty")
    usage = _held_out_usage(args, meta, data)
    amp = inference_amp(args, meta, dev)
    m, probs = evaluate_model(model, split, data.classes, device=dev, amp=amp,
                              batch_crops=eval_batch_size(dev, doc), return_probs=True)
    s = summarize(doc, input_size=CROP_SIZE, num_classes=len(data.classes))
    # The accuracy keys name the evaluated split: a --split val figure is not a test figure.
    named = {k.replace("test_", f"{args.split}_", 1): m[k]
             for k in ("test_accuracy_tencrop", "test_accuracy_single", "test_loss_tencrop")}
    metrics = {"model": str(args.model), "genome": doc.get("name"), "data": data.source, "split": args.split,
               **({"usage": usage} if usage else {}), **named,
               **{k: m[k] for k in ("macro_f1", "n", "per_class", "confusion", "classes")},
               "params": s["params"], "macs": s["macs"], "device": str(dev), "precision": "bf16" if amp else "fp32"}
    out.mkdir(parents=True, exist_ok=True)
    write_plots(out, [], metrics, model, split, probs, data.classes, title=str(doc.get("name", "")),
                split=args.split)
    atomic_write_json(out / "metrics.json", metrics)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.model} on {data.source} {args.split} ({f'{usage}, ' if usage else ''}{m['n']} images): ten-crop accuracy "
              f"{m['test_accuracy_tencrop']:.4f}, single crop {m['test_accuracy_single']:.4f}, "
              f"macro F1 {m['macro_f1']:.4f}")
        for c, v in m["per_class"].items():
            print(f"  {c:<10} precision {v['precision']:.3f}  recall {v['recall']:.3f}  f1 {v['f1']:.3f}  "
                  f"n {v['support']}")
    print(f"wrote metrics.json, confusion.png, saliency.png to {out}", file=sys.stderr)
    return 0


def _held_out_usage(args: argparse.Namespace, meta: dict, data) -> str | None:
    """The FER2013 Usage the evaluated split is read from (None for other data and for train);
    a warning line when a test evaluates the held-out split the model was not tested on, which
    then was its validation split (chosen on, and trained on with --merge-val)."""
    info = data.info or {}
    usage = info.get(f"{args.split}_usage")
    trained_test = meta.get("test_usage")
    if usage and trained_test in ("PublicTest", "PrivateTest") and args.split == "test" and usage != trained_test:
        from fernas.data_spec import fer_test_of

        flag = fer_test_of(trained_test)
        print(f"fernas evaluate: warning: {args.model} was tested on {trained_test} and chose its weights on "
              f"{usage}, which this evaluates; --fer-test {flag} evaluates the split it was tested on",
              file=sys.stderr)
    return usage


def _check_out_dir(out: Path) -> None:
    """--out must be (or become) a directory: a file at it or above it is refused before the
    evaluation's work, in words, not as the 'File exists' its creation would raise."""
    from fernas.errors import UserError
    from fernas.io import refuse_file_in_path

    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a directory (--out names the directory for metrics.json and plots)")
    refuse_file_in_path(out)
    if (out / "config.json").exists():  # its metrics.json would become the run's result in `fernas runs`
        raise UserError(f"{out}: holds a fernas run (config.json); choose another --out for the evaluation")
