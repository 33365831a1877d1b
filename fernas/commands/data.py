"""`fernas data check PATH` and `fernas data demo --out PATH`: inspect a dataset, export the demo.

`check` loads any source `--data` accepts (demo, a FER2013 CSV variant, an image folder) and
prints per split the class counts, image size and pixel statistics; `demo` writes the built-in
synthetic faces as a fer2013.csv or an image folder, so the real loaders can be tried on them.
"""

from __future__ import annotations

import argparse
import time

from fernas import demo_spec
from fernas.commands.common import add_fer_test_argument


def register(sub) -> None:
    p = sub.add_parser("data", help="check a dataset, or write the built-in demo faces to disk",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    c = dsub.add_parser("check", help="load a dataset and print class counts, image size and pixel statistics",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("path", metavar="PATH", help="'demo[:N]', 'demo-hard[:N]', a FER2013 CSV or an image folder")
    c.add_argument("--labels", default=None, metavar="CSV", help="FER+ vote file (fer2013new.csv)")
    c.add_argument("--skip-bad", action="store_true", help="skip malformed rows/images and count them")
    c.add_argument("--data-seed", type=int, default=0, help="seed of the demo data and stratified splits, -2**63 to 2**63-1 (seeds equal modulo 2**32 give the same data)")
    add_fer_test_argument(c)
    c.set_defaults(func=run_check)

    d = dsub.add_parser("demo", help="write the synthetic demo faces as a FER2013 CSV or an image folder",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", required=True, metavar="PATH", help="output file (csv) or folder (folder); must not exist or be empty")
    d.add_argument("--format", choices=("csv", "folder"), default="csv", help="fer2013.csv layout or ROOT/split/class/*.png")
    sizes = demo_spec.DEFAULT_SIZES
    d.add_argument("--n-train", type=int, default=sizes[0],
                   help=f"training images (each split holds at most {demo_spec.MAX_DEMO_IMAGES:,})")
    d.add_argument("--n-val", type=int, default=sizes[1], help="validation images (Usage PublicTest)")
    d.add_argument("--n-test", type=int, default=sizes[2], help="test images (Usage PrivateTest)")
    d.add_argument("--seed", type=int, default=0, help="generator seed, -2**63 to 2**63-1 (seeds equal modulo 2**32 give the same faces)")
    d.add_argument("--difficulty", choices=demo_spec.DIFFICULTY_NAMES, default="standard",
                   help="hard: more pose, occlusion, lighting and noise (what --data demo-hard loads)")
    d.set_defaults(func=run_demo)


def run_check(args: argparse.Namespace) -> int:
    from fernas import data as fdata
    from fernas.errors import DataError, DataSettingError

    t0 = time.perf_counter()
    try:
        ds = fdata.load_dataset(args.path, labels=args.labels, skip_bad=args.skip_bad, seed=args.data_seed,
                                fer_test=args.fer_test)
    except DataSettingError as exc:
        if exc.setting != "data":
            raise
        # `data check` takes the source as PATH, not --data: name it as the user typed it
        raise DataError(exc._text(lambda s: "PATH" if s == "data" else "--" + s.replace("_", "-"))) from None
    secs = time.perf_counter() - t0
    info = ds.info
    kind = info.get("variant") or info.get("kind", "?")
    print(f"{ds.source}: {kind}, {ds.num_classes} classes, loaded in {secs:.2f} s (cache {info.get('cache', 'off')})")
    if info.get("split"):
        print(f"split: {info['split']}")
    if info.get("labels"):
        print(f"labels: FER+ majority vote from {info['labels']} ({info.get('ferplus_dropped', 0)} rows dropped)")
    width = max(8, *(len(c) for c in ds.classes))
    print("split  " + "  ".join(c.rjust(width) for c in ds.classes) + "   total  size   mean    std  min  max")
    for name, sp in ds.splits().items():
        counts = sp.class_counts(ds.num_classes)
        xf = sp.x.float()
        size = "x".join(map(str, sp.x.shape[1:]))
        print(f"{name:5s}  " + "  ".join(str(n).rjust(width) for n in counts)
              + f"  {len(sp):6d}  {size}  {xf.mean():5.1f}  {xf.std():5.1f}  {int(sp.x.min()):3d}  {int(sp.x.max()):3d}")
    print(f"skipped bad rows/files: {ds.skipped}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fernas import data as fdata
    from fernas import demo_faces

    for flag in ("n_train", "n_val", "n_test"):
        fdata.check_demo_size(getattr(args, flag), flag)  # 1..MAX_DEMO_IMAGES, before any memory is spent
    fdata.check_seed(args.seed, "seed")
    from fernas.io import refuse_file_in_path

    refuse_file_in_path(Path(args.out))  # a file where a folder of the path should be: said, not 'File exists'
    fdata.refuse_nonempty(Path(args.out))  # before spending seconds on drawing
    ds = demo_faces.make_demo(args.n_train, args.n_val, args.n_test, seed=args.seed, difficulty=args.difficulty)
    if args.format == "csv":
        fdata.write_fer_csv(ds, args.out)
    else:
        fdata.write_image_folder(ds, args.out)
    total = len(ds.train) + len(ds.val) + len(ds.test)
    level = "" if args.difficulty == "standard" else args.difficulty + " "
    print(f"wrote {total} {level}demo faces ({len(ds.train)} train, {len(ds.val)} val, {len(ds.test)} test) "
          f"to {args.out} as {args.format}")
    return 0
