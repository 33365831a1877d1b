"""Flags several commands share (the data source, the device) and their translation into calls."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fernas.data_spec import FER_TEST_CHOICES, FER_TEST_DEFAULT

if TYPE_CHECKING:  # parsing a command line imports no torch
    from fernas.dataset import Dataset


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data flags every data-using command shares: --data, --labels, --skip-bad, --data-seed."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", default="demo", metavar="SOURCE",
                   help="'demo' (built-in synthetic faces; 'demo:N' or 'demo:TRAIN,VAL,TEST' sets sizes; 'demo-hard' "
                        "the same with more pose, occlusion, lighting and noise), "
                        "a FER2013 CSV (fer2013.csv, icml_face_data.csv or train.csv) or an image folder "
                        "ROOT/{train,val,test}/<class>/")
    g.add_argument("--labels", default=None, metavar="CSV",
                   help="FER+ vote file (fer2013new.csv): relabel fer2013.csv by majority vote")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip malformed rows and unreadable images (and count them) instead of stopping")
    g.add_argument("--data-seed", type=int, default=0,
                   help="seed of the demo generator and of stratified val/test splits, -2**63 to 2**63-1 (seeds equal modulo 2**32 give the same data)")
    add_fer_test_argument(g)


FER_TEST_HELP = ("a FER2013 CSV's test split: private = PrivateTest, with PublicTest as validation (Kaggle's final "
                 "ranking); public = PublicTest, with PrivateTest as validation, as the VGG paper's code ran (its "
                 "73.28%% is on PublicTest)")


def add_fer_test_argument(group) -> None:
    group.add_argument("--fer-test", choices=FER_TEST_CHOICES, default=FER_TEST_DEFAULT, help=FER_TEST_HELP)


DATA_KEYS = ("data", "labels", "skip_bad", "data_seed", "fer_test")  # what add_data_arguments defines


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from fernas.data import load_dataset

    return load_dataset(args.data, labels=getattr(args, "labels", None), skip_bad=getattr(args, "skip_bad", False),
                        seed=getattr(args, "data_seed", 0), fer_test=getattr(args, "fer_test", FER_TEST_DEFAULT))


def add_inference_arguments(parser: argparse.ArgumentParser, device_help: str = "auto, cpu or cuda") -> None:
    """--device and --precision of the commands that run a saved model (evaluate, predict)."""
    parser.add_argument("--device", default="auto", help=device_help)
    parser.add_argument("--precision", choices=("model", "auto", "bf16", "fp32"), default="model",
                        help="inference precision: model = the one the model was tested in when trained (its "
                             "model.pt's precision: bf16 or fp32), so the run's metrics.json is reproduced; auto = "
                             "bf16 autocast where the hardware has it")


def inference_amp(args: argparse.Namespace, meta: dict, dev) -> bool:
    """bf16 autocast on or off for a saved model's inference (`add_inference_arguments`); a
    model.pt records the precision its test ran in (bf16 or fp32); one without it, `auto`."""
    from fernas.device import amp_for

    precision = meta.get("precision", "auto") if args.precision == "model" else args.precision
    return amp_for(precision if precision in ("auto", "bf16", "fp32") else "auto", dev)


def device_from_args(args: argparse.Namespace):
    """`args.device` as a torch.device; an unusable one is a one-line error naming --device
    (e.g. "--device cuda: no CUDA GPU is available here ...; use --device cpu or auto")."""
    from fernas.device import resolve_device
    from fernas.errors import SettingError, UserError

    try:
        return resolve_device(args.device)
    except SettingError as exc:
        raise UserError(exc.as_flag()) from None


def model_from_args(args: argparse.Namespace):
    """(device, genome, model in eval mode, meta) of the MODEL.pt and --device a command was given."""
    from fernas.modelfile import load_model_file

    dev = device_from_args(args)
    return (dev, *load_model_file(args.model, device=dev))
