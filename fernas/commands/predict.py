"""`fernas predict MODEL.pt|MODEL.onnx IMAGE...`: the emotion and seven probabilities of each face image."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify face images (any size, colour or grayscale) with a saved model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="a model.pt written by `fernas decode --train`, or an ONNX file "
                                                  "(`fernas export`, a run's model-tencrop.onnx), run with onnxruntime")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, each taken as a face crop")
    from fernas.commands.common import add_inference_arguments

    add_inference_arguments(p, "auto, cpu or cuda (an ONNX file runs on the CPU, in fp32)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.set_defaults(func=run)


def _probabilities(args: argparse.Namespace, x) -> tuple[list[str], object]:
    """(classes, probabilities (N, C)) of uint8 faces x (N, 48, 48) by the model file or ONNX file."""
    from fernas.export import OnnxClassifier, is_onnx_file

    if is_onnx_file(args.model):  # its own crops (one or ten) and class order
        if args.precision not in ("model", "fp32"):
            from fernas.errors import UserError

            raise UserError(f"--precision {args.precision}: {args.model} is an ONNX program, which runs in fp32")
        clf = OnnxClassifier(args.model)
        return clf.classes, clf.predict_proba(x)
    from fernas.commands.common import inference_amp, model_from_args
    from fernas.dataset import FER_CLASSES
    from fernas.evaluate import predict_proba

    dev, doc, model, meta = model_from_args(args)
    return list(meta.get("classes") or FER_CLASSES), predict_proba(model, x, crops=10, device=dev,
                                                                   amp=inference_amp(args, meta, dev))


def run(args: argparse.Namespace) -> int:
    from fernas.evaluate import load_face_images

    x = load_face_images(args.images)  # (N, 48, 48) uint8; every file checked before any output
    classes, probs = _probabilities(args, x)
    for path, p in zip(args.images, probs):
        k = int(p.argmax())
        if args.json:
            print(json.dumps({"file": path, "emotion": classes[k], "confidence": round(float(p[k]), 6),
                              "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}))
        else:
            rest = "  ".join(f"{c} {float(v):.3f}" for c, v in zip(classes, p))
            print(f"{path}: {classes[k]} ({float(p[k]):.3f})  [{rest}]")
    return 0
