"""`fernas predict MODEL.pt IMAGE...`: the emotion and seven probabilities of each face image."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify face images (any size, colour or grayscale) with a saved model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", metavar="MODEL.pt", help="a model.pt written by `fernas decode --train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, each taken as a face crop")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fernas.commands.common import model_from_args
    from fernas.dataset import FER_CLASSES
    from fernas.device import default_amp
    from fernas.evaluate import load_face_images, predict_proba

    dev, doc, model, meta = model_from_args(args)
    x = load_face_images(args.images)  # (N, 48, 48) uint8; every file checked before any output
    classes = list(meta.get("classes") or FER_CLASSES)
    probs = predict_proba(model, x, crops=10, device=dev, amp=default_amp(dev))  # (N, C)
    for path, p in zip(args.images, probs):
        k = int(p.argmax())
        if args.json:
            print(json.dumps({"file": path, "emotion": classes[k], "confidence": round(float(p[k]), 6),
                              "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}}))
        else:
            rest = "  ".join(f"{c} {float(v):.3f}" for c, v in zip(classes, p))
            print(f"{path}: {classes[k]} ({float(p[k]):.3f})  [{rest}]")
    return 0
