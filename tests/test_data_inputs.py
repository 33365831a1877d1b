"""Inputs the data loaders once got wrong: 16-bit and float images, decompression bombs, the parse
cache answering with another copy's path or missing an empty class folder, huge seeds and demo
sizes, FER+ votes that drop a whole split, and image-folder layouts (split synonyms, unknown
folders, what a stratified split really took, classes without training images)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fernas import cli
from fernas.data import MAX_SEED, MIN_SEED, load_dataset, write_fer_csv, write_image_folder
from fernas.data.folder import folder_hash
from fernas.demo_faces import make_demo
from fernas.errors import DataError, UserError
from fernas.evaluate import load_face_images

GENOME = Path(__file__).resolve().parents[1] / "genomes" / "daocong_mobilenetv2.json"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERNAS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def faces(tmp_path):
    """An image folder of 21 demo faces: train 2 per class, val and test 1 per class."""
    root = tmp_path / "imgs"
    write_image_folder(make_demo(14, 7, 7, seed=3), root)
    return root


def _one_line_exit_2(argv, capsys, *needles):
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


# ---------------------------------------------------------------------------- 1: deep pixels

def _rewrite(root, fn):
    for f in sorted(root.rglob("*.png")):
        fn(f, np.asarray(Image.open(f).convert("L")))


def test_16bit_faces_read_as_their_8bit_originals(tmp_path, faces):
    i16 = tmp_path / "i16"
    shutil.copytree(faces, i16)
    _rewrite(i16, lambda f, a: Image.fromarray(a.astype(np.uint16) * 257).save(f))  # 16-bit PNG, mode I;16
    assert Image.open(next(i16.rglob("*.png"))).mode == "I;16"
    ref, deep = load_dataset(faces), load_dataset(i16)
    for a, b in zip(ref.splits().values(), deep.splits().values()):
        assert (a.x.int() - b.x.int()).abs().max() <= 1 and torch.equal(a.y, b.y)
    # fernas predict reads through the same function
    files = sorted(faces.rglob("*.png"))[:3]
    deep_files = [i16 / f.relative_to(faces) for f in files]
    assert (load_face_images(files).int() - load_face_images(deep_files).int()).abs().max() <= 1
    pgm = [tmp_path / f"{i}.pgm" for i in range(len(files))]  # a 16-bit PGM: Pillow opens it as mode I
    for f, p in zip(files, pgm):
        Image.fromarray(np.asarray(Image.open(f)).astype(np.uint16) * 257).save(p)
    assert Image.open(pgm[0]).mode == "I"
    assert (load_face_images(files).int() - load_face_images(pgm).int()).abs().max() <= 1


def test_float_images_scaled_and_32bit_integers_refused(tmp_path):
    a = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))  # (48, 48) ramp 0..235
    Image.fromarray(a.astype(np.float32) / 255).save(tmp_path / "unit.tif")  # mode F, 0..1
    Image.fromarray(a.astype(np.float32)).save(tmp_path / "grey.tif")  # mode F, 0..255
    x = load_face_images([tmp_path / "unit.tif", tmp_path / "grey.tif"])
    assert (x.int() - torch.from_numpy(a).int()).abs().max() <= 1
    Image.fromarray(a.astype(np.int32) << 20).save(tmp_path / "deep.tif")  # mode I, 32 bits per sample
    with pytest.raises(UserError, match=r"deep\.tif: not a readable image \(32-bit integer pixels"):
        load_face_images([tmp_path / "deep.tif"])


# ---------------------------------------------------------------------------- 6: decompression bombs

def test_decompression_bomb_is_a_bad_image(faces, monkeypatch, capsys):
    bomb = faces / "train" / "happy" / "bomb.png"
    Image.new("L", (60, 60)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # a 60x60 image is over twice the limit
    with pytest.raises(DataError, match=r"bomb\.png: unreadable image \(more than 3,000 pixels"):
        load_dataset(faces, use_cache=False)
    ds = load_dataset(faces, skip_bad=True, use_cache=False)
    assert ds.skipped == 1  # the 48x48 faces are over the limit too, but under twice it: a warning, loaded
    _one_line_exit_2(["predict", faces / "no-model.pt", bomb], capsys, "bomb.png: not a readable image",
                     "decompression bomb")


def test_a_broken_link_in_an_image_folder_is_a_bad_image_not_dropped(faces):
    (faces / "train" / "happy" / "gone.png").symlink_to(faces / "nowhere.png")
    with pytest.raises(DataError, match=r"gone\.png: unreadable image \(a link to a file that does not exist"):
        load_dataset(faces, use_cache=False)
    assert load_dataset(faces, skip_bad=True, use_cache=False).skipped == 1  # counted in the summary


# ---------------------------------------------------------------------------- 2: the parse cache

def test_cache_hit_names_the_path_given_now(tmp_path, faces, capsys):
    a = tmp_path / "a.csv"
    write_fer_csv(make_demo(7, 7, 7), a)
    b = tmp_path / "b.csv"
    shutil.copy(a, b)
    assert load_dataset(a).info["cache"] == "miss"
    ds = load_dataset(b)
    assert ds.info["cache"] == "hit" and ds.source == str(b) and ds.info["path"] == str(b)
    assert cli.main(["data", "check", str(b)]) == 0
    assert capsys.readouterr().out.startswith(f"{b}: ")
    copy = tmp_path / "copy"
    shutil.copytree(faces, copy)
    load_dataset(faces)
    ds = load_dataset(copy)
    assert ds.info["cache"] == "hit" and ds.source == str(copy) and ds.info["path"] == str(copy)


def test_cache_key_sees_an_empty_class_folder(tmp_path, faces):
    load_dataset(faces)  # cached
    empty = tmp_path / "empty"
    shutil.copytree(faces, empty)
    (empty / "train" / "contempt").mkdir()
    assert folder_hash(empty) != folder_hash(faces)
    for cache in ("cache", "fresh"):  # the same answer with and without the entry of `faces`
        with pytest.raises(DataError, match=r"train/contempt: class 'contempt' has no training images "
                                            r"\(the folder holds no readable images\)"):
            load_dataset(empty, cache_dir=tmp_path / cache)


# ---------------------------------------------------------------------------- 3: seeds and sizes

@pytest.mark.parametrize("argv, needle", [
    (["data", "check", "demo:50", "--data-seed", "99999999999999999999"], "--data-seed 99999999999999999999: "),
    (["data", "check", "demo:50", "--data-seed", str(-2**63 - 1)], f"--data-seed {-2**63 - 1}: a seed must be an integer from -2**63"),
    (["data", "demo", "--seed", "99999999999999999999", "--out", "x.csv"], "--seed 99999999999999999999: "),
    (["data", "check", "demo:99999999999"], "demo:99999999999: a demo split needs 1 to 1,000,000 images"),
    (["data", "demo", "--n-train", "99999999999999", "--out", "y.csv"], "--n-train 99999999999999: a demo split"),
    (["train", GENOME, "--data", "demo:5,5,2000000", "--out", "t"], "--data demo:5,5,2000000: a demo split needs"),
    (["train", GENOME, "--data-seed", str(2**63), "--out", "t"], f"--data-seed {2**63}: a seed must be"),
])
def test_huge_seeds_and_sizes_refused_in_one_line(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(argv, capsys, needle)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()


def test_largest_seed_works(tmp_path):
    ds = load_dataset("demo:7,7,7", seed=MAX_SEED)
    assert len(ds.train) == 7 and not torch.equal(ds.train.x, load_dataset("demo:7,7,7").train.x)
    for seed in (-1, -5):  # negative seeds worked before the limits, and still do
        assert not torch.equal(load_dataset("demo:7,7,7", seed=seed).train.x, load_dataset("demo:7,7,7").train.x)
    assert len(load_dataset("demo:7,7,7", seed=MIN_SEED).train) == 7
    p = tmp_path / "train.csv"  # no Usage column: a stratified split seeded by it
    p.write_text("emotion,pixels\n" + "".join(f"{i % 7},{' '.join(['9'] * 2304)}\n" for i in range(70)))
    assert len(load_dataset(p, seed=MAX_SEED).val) == 7


# ---------------------------------------------------------------------------- 4: FER+ dropping a split

def _ferplus(path, usages, vote_of):
    head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    rows = [f"{u},fer{i:07d}.png," + ",".join(map(str, vote_of(u))) for i, u in enumerate(usages)]
    path.write_text("\n".join([head] + rows) + "\n")
    return path


def test_ferplus_votes_dropping_a_split_blame_the_vote_file(tmp_path, capsys):
    data = tmp_path / "fer2013.csv"
    write_fer_csv(make_demo(7, 7, 7), data)
    usages = ["Training"] * 7 + ["PublicTest"] * 7 + ["PrivateTest"] * 7
    zeros = _ferplus(tmp_path / "zeros.csv", usages, lambda u: [0] * 10)
    _one_line_exit_2(["data", "check", data, "--labels", zeros], capsys,
                     f"{zeros}: the FER+ relabelling dropped all 21 rows of {data}")
    no_val = _ferplus(tmp_path / "noval.csv", usages,
                      lambda u: [0] * 8 + [10, 0] if u == "PublicTest" else [10] + [0] * 9)  # val: all unknown
    _one_line_exit_2(["data", "check", data, "--labels", no_val], capsys,
                     f"{no_val}: the FER+ relabelling dropped all 7 rows of split 'val' (Usage PublicTest)",
                     "unknown, not-a-face or without a majority")


# ---------------------------------------------------------------------------- 5: image-folder layouts

def test_split_folder_synonyms_and_ignored_folders(tmp_path, faces, capsys):
    (faces / "val").rename(faces / "Validation")
    (faces / "notes").mkdir()
    ds = load_dataset(faces)
    assert len(ds.val) == 7 and "split" not in ds.info  # the validation folder is used, not carved from train
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ignored folder 'notes'" in err
    load_dataset(faces)  # a cache hit warns too
    assert "ignored folder 'notes'" in capsys.readouterr().err
    (faces / "val").mkdir()
    with pytest.raises(DataError, match="both 'Validation' and 'val' are val folders"):
        load_dataset(faces)


def test_split_line_says_what_was_really_taken(faces, capsys):
    shutil.rmtree(faces / "val")
    ds = load_dataset(faces)
    assert len(ds.val) == 7 and len(ds.train) == 7
    assert ds.info["split"].startswith("stratified by class, seed 0: val 7 of 14 train images (50.0%; 0.1 asked")
    assert cli.main(["data", "check", str(faces)]) == 0
    assert "split: stratified by class, seed 0: val 7 of 14 train images (50.0%" in capsys.readouterr().out


def test_class_only_in_test_is_refused(faces, capsys):
    shutil.copytree(faces / "test" / "happy", faces / "test" / "contempt")
    _one_line_exit_2(["data", "check", faces], capsys,
                     f"{faces}/train/contempt: class 'contempt' has no training images "
                     "(the class folder is only in test)")


def test_a_directory_where_a_file_belongs_and_a_negative_pixel_are_named_as_such(tmp_path, capsys):
    csv = tmp_path / "fer2013.csv"
    write_fer_csv(make_demo(14, 7, 7), csv)
    _one_line_exit_2(["data", "check", csv, "--labels", tmp_path], capsys,
                     f"{tmp_path}: a directory (expected the FER+ vote file fer2013new.csv)")
    with pytest.raises(UserError, match="a directory; give image files"):  # what `fernas predict DIR` reads
        load_face_images([tmp_path])
    lines = csv.read_text().splitlines()
    emotion, pixels, usage = lines[1].split(",")
    lines[1] = ",".join([emotion, "-1" + pixels[pixels.index(" "):], usage])
    csv.write_text("\n".join(lines) + "\n")
    _one_line_exit_2(["data", "check", csv], capsys, "line 2: pixel value -1 is outside 0..255")
