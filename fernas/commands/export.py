"""`fernas export MODEL.pt --format onnx|torchscript [--ten-crop] [--out PATH]`: an inference program."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="write a model as an ONNX (or TorchScript) program that runs without fernas",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Input float32 (N, 1, 48, 48) in [0, 1] (grayscale face, pixels / 255), output "
                                   "class probabilities (N, C); the class order and preprocessing are in the ONNX "
                                   "file's metadata.  ONNX is checked against PyTorch with onnxruntime before it is "
                                   "written.")
    p.add_argument("model", metavar="MODEL.pt", help="a model.pt written by `fernas decode --train`")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"],
                   help="onnx (fp32, dynamic batch) or torchscript (deprecated in torch 2.x)")
    p.add_argument("--ten-crop", action="store_true",
                   help="average the ten crops inside the program (the protocol of the reported test accuracy); "
                        "default: the centre 40x40 crop")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="default: beside MODEL.pt (model.onnx, model-tencrop.onnx, model.torchscript.pt)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fernas import __version__
    from fernas.errors import UserError, first_line
    from fernas.export import ONNX_TOLERANCE, default_out, export_onnx, export_torchscript
    from fernas.genome import genome_id
    from fernas.modelfile import load_model_file

    out = Path(args.out) if args.out else default_out(args.model, args.format, args.ten_crop)
    _check_out(out)
    if out.exists() and Path(args.model).exists() and out.samefile(args.model):  # --force replaces outputs only
        raise UserError(f"--out {out}: is the input model; choose another --out")
    if out.exists() and not args.force:
        raise UserError(f"{out}: exists; pass --force to replace it or choose another --out")
    doc, model, meta = load_model_file(args.model)
    variant = "ten-crop" if args.ten_crop else "centre crop"
    from fernas.dataset import FER_CLASSES

    classes = list(meta.get("classes") or FER_CLASSES)
    try:
        if args.format == "torchscript":
            export_torchscript(model, out, ten_crop=args.ten_crop)
        else:
            diff = export_onnx(model, out, ten_crop=args.ten_crop, classes=classes,
                               meta={"genome": doc.get("name", ""), "genome_id": genome_id(doc),
                                     "fernas_version": __version__})
    except (OSError, UserError):
        raise
    except Exception as exc:  # the exporter's own failures (an unsupported op, the check against PyTorch)
        if _interrupted(exc):  # torch.export wraps a Ctrl-C that came during its tracing
            raise KeyboardInterrupt from None
        raise UserError(f"{args.model}: {args.format} export failed ({type(exc).__name__}: {first_line(exc)})") from None
    if args.format == "torchscript":
        print(f"{out}: TorchScript, {variant}; load with torch.jit.load")
        return 0
    print(f"{out}: ONNX (fp32, dynamic batch), {variant}, classes {','.join(classes)}; checked against PyTorch "
          f"with onnxruntime: max |difference| {diff:.1e} (tolerance {ONNX_TOLERANCE:g})")
    return 0


def _interrupted(exc: BaseException) -> bool:
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM taken as one) anywhere in the exception's chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    from fernas import stop_signals

    return bool(stop_signals.received)


def _check_out(out) -> None:
    """Refuse an --out the program cannot be written to before the export's work, in words about
    the path given (not the temporary file beside it, not 'File exists' for a file in the way)."""
    from fernas.errors import UserError

    from fernas.io import refuse_file_in_path

    if out.is_dir():  # --force replaces files only
        raise UserError(f"{out}: is a directory; give --out a file name")
    refuse_file_in_path(out)
