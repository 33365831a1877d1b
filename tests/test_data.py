"""Loaders of fernas.data on small files written here in the distributed FER2013 formats,
the image-folder loader, FER+ relabelling, the cache, bad input, and `fernas data`."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fernas import cli
from fernas.data import FER_CLASSES, FERPLUS_CLASSES, load_dataset, parse_demo_spec
from fernas.errors import DataError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FERNAS_CACHE_DIR", str(tmp_path / "cache"))


def _rows(n_per=(4, 2, 2), seed=0):
    """Rows (label, pixels (2304,), usage): every class in every split."""
    rng = np.random.default_rng(seed)
    rows = []
    for usage, n in zip(("Training", "PublicTest", "PrivateTest"), n_per):
        for i in range(n * 7):
            rows.append((i % 7, rng.integers(0, 256, 2304), usage))
    return rows


def _write(path, header, rows, cols=("emotion", "pixels", "usage"), eol="\n", quote=False):
    lines = [header]
    for lab, px, use in rows:
        pix = " ".join(map(str, px))
        if quote:
            pix = f'"{pix}"'
        field = {"emotion": str(lab), "pixels": pix, "usage": use}
        lines.append(",".join(field[c] for c in cols))
    Path(path).write_bytes((eol.join(lines) + eol).encode())
    return path


def test_fer2013_csv_splits_and_pixels(tmp_path):
    rows = _rows()
    ds = load_dataset(_write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows))
    assert ds.classes == FER_CLASSES
    assert (len(ds.train), len(ds.val), len(ds.test)) == (28, 14, 14)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape == (28, 48, 48)
    assert torch.equal(ds.train.x[0].flatten(), torch.tensor(rows[0][1], dtype=torch.uint8))
    assert ds.val.y.tolist() == [r[0] for r in rows if r[2] == "PublicTest"]
    assert ds.test.class_counts(7) == [2] * 7
    assert ds.info["variant"] == "fer2013.csv"


def test_fer_test_public_swaps_val_and_test_as_the_vgg_paper_ran(tmp_path, capsys):
    rows = _rows(n_per=(4, 2, 3))  # PublicTest 14 rows, PrivateTest 21
    path = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows)
    private, public = load_dataset(path), load_dataset(path, fer_test="public")  # the second is no cache hit
    assert (len(private.val), len(private.test)) == (14, 21) and (len(public.val), len(public.test)) == (21, 14)
    assert torch.equal(public.test.x, private.val.x) and torch.equal(public.val.x, private.test.x)
    assert torch.equal(public.train.x, private.train.x)
    assert public.info["split"] == "Usage column: val = PrivateTest, test = PublicTest"
    assert private.info["test_usage"] == "PrivateTest" and public.info["test_usage"] == "PublicTest"
    assert cli.main(["data", "check", str(path), "--fer-test", "public"]) == 0
    assert "split: Usage column: val = PrivateTest, test = PublicTest" in capsys.readouterr().out
    no_usage = _write(tmp_path / "train.csv", "emotion,pixels", rows, cols=("emotion", "pixels"))
    with pytest.raises(DataError, match=r"fer_test public: .*train.csv has no Usage column"):
        load_dataset(no_usage, fer_test="public")
    for source, what in (("demo:70", "the demo data"), (str(tmp_path), "an image folder")):
        with pytest.raises(DataError, match=f"fer_test public: applies to a FER2013 CSV with a Usage column, not to {what}"):
            load_dataset(source, fer_test="public")
    with pytest.raises(DataError, match="fer_test both: expected private or public"):
        load_dataset(path, fer_test="both")


def test_icml_spaced_header_with_crlf(tmp_path):
    rows = _rows()
    p = _write(tmp_path / "icml_face_data.csv", "emotion, Usage, pixels", rows,
               cols=("emotion", "usage", "pixels"), eol="\r\n")
    ds = load_dataset(p)
    ref = load_dataset(_write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows))
    assert ds.info["variant"] == "icml_face_data.csv"
    for a, b in zip(ds.splits().values(), ref.splits().values()):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_challenge_train_csv_stratified_seeded_split(tmp_path):
    rows = [(lab, px, "") for lab, px, _ in _rows((10, 0, 0))]  # 70 rows, 10 per class
    p = _write(tmp_path / "train.csv", "emotion,pixels", rows, cols=("emotion", "pixels"), quote=True)
    ds = load_dataset(p, seed=1)
    assert ds.info["variant"] == "train.csv"
    assert ds.val.class_counts(7) == [1] * 7 and ds.test.class_counts(7) == [1] * 7
    assert ds.train.class_counts(7) == [8] * 7
    again = load_dataset(p, seed=1, use_cache=False)
    other = load_dataset(p, seed=2, use_cache=False)
    assert torch.equal(ds.val.x, again.val.x)
    assert not torch.equal(ds.val.x, other.val.x)
    # no image is in two splits
    flat = torch.cat([s.x.flatten(1) for s in ds.splits().values()])
    assert len(torch.unique(flat, dim=0)) == 70


def _ferplus(path, votes, usages):
    head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    lines = [head] + [f"{u},fer{i:07d}.png," + ",".join(map(str, v)) for i, (u, v) in enumerate(zip(usages, votes))]
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def test_ferplus_majority_vote_relabels_and_drops(tmp_path):
    rows = _rows((1, 1, 1))  # 21 rows, 7 per split
    votes = []
    for i in range(21):
        k = i % 7
        if k == 0:
            votes.append([0, 8, 1, 0, 1, 0, 0, 0, 0, 0])  # happy (the single votes are outliers)
        elif k == 1:
            votes.append([0, 0, 0, 0, 0, 0, 0, 0, 9, 1])  # unknown -> dropped
        elif k == 2:
            votes.append([0, 0, 0, 0, 0, 0, 0, 0, 0, 10])  # not a face -> dropped
        elif k == 3:
            votes.append([4, 4, 2, 0, 0, 0, 0, 0, 0, 0])  # no majority -> dropped
        elif k == 4:
            votes.append([2, 0, 0, 0, 0, 0, 0, 7, 0, 1])  # contempt
        elif k == 5:
            votes.append([0, 0, 0, 0, 6, 0, 4, 0, 0, 0])  # anger, soft 0.6 / 0.4 fear
        else:
            votes.append([10, 0, 0, 0, 0, 0, 0, 0, 0, 0])  # neutral
    data = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows)
    lab = _ferplus(tmp_path / "fer2013new.csv", votes, [r[2] for r in rows])
    ds = load_dataset(data, labels=lab)
    assert ds.classes == FERPLUS_CLASSES
    assert ds.train.y.tolist() == [3, 7, 0, 6]  # happy, contempt, angry, neutral
    assert ds.info["ferplus_dropped"] == 9
    assert torch.allclose(ds.train.soft.sum(1), torch.ones(4))
    assert ds.train.soft[2, 0] == pytest.approx(0.6) and ds.train.soft[2, 2] == pytest.approx(0.4)
    # the kept images are the right rows of fer2013.csv
    assert torch.equal(ds.train.x[1].flatten(), torch.tensor(rows[4][1], dtype=torch.uint8))
    with pytest.raises(DataError, match="rows"):
        load_dataset(data, labels=_ferplus(tmp_path / "short.csv", votes[:5], ["Training"] * 5))


def _img(path, mode="L", size=(48, 48), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0]) + ((3,) if mode == "RGB" else ()), value, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)


def test_image_folder_fer_names_any_case_any_size_and_mode(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 10), ("test", 2)):
        for cname in ("Happy", "ANGRY", "neutral"):
            for i in range(n):
                _img(root / split / cname / f"{i}.png", mode="RGB" if i % 2 else "L", size=(64, 80), value=200)
        _img(root / split / "sad" / "x.jpg")
        _img(root / split / "sad" / "y.jpg")
    ds = load_dataset(root)
    assert ds.classes == ["angry", "happy", "sad", "neutral"]  # FER2013 order
    assert ds.train.x.shape[1:] == (48, 48) and ds.train.x.dtype == torch.uint8
    assert int(ds.train.x[ds.train.y == 1].float().mean().round()) == 200
    assert ds.val.class_counts(4) == [1, 1, 1, 1]  # 10 % per class off train, at least one
    assert ds.test.class_counts(4) == [2, 2, 2, 2]


def test_image_folder_other_names_sorted_and_explicit_val(tmp_path):
    root = tmp_path / "imgs"
    for split in ("train", "val", "test"):
        for cname in ("zebra", "apple", "mango"):
            _img(root / split / cname / "a.png")
    ds = load_dataset(root)
    assert ds.classes == ["apple", "mango", "zebra"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3, 3, 3)


def test_cache_second_load_hits_and_changed_content_misses(tmp_path):
    p = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", _rows())
    a = load_dataset(p)
    b = load_dataset(p)
    assert a.info["cache"] == "miss" and b.info["cache"] == "hit"
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert list((tmp_path / "cache").glob("*.pt"))
    _write(p, "emotion,pixels,Usage", _rows(seed=5))
    c = load_dataset(p)
    assert c.info["cache"] == "miss" and not torch.equal(a.train.x, c.train.x)


def test_demo_source_and_sizes(tmp_path):
    ds = load_dataset("demo:70,14,21")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (70, 14, 21) and ds.classes == FER_CLASSES
    assert load_dataset("demo:70,14,21").info["cache"] == "hit"
    assert parse_demo_spec("demo:100") == (100, 20, 20)
    with pytest.raises(DataError, match="demo:N"):
        load_dataset("demo:lots")
    hard = load_dataset("demo-hard:70,14,21")
    assert (len(hard.train), len(hard.val), len(hard.test)) == (70, 14, 21)
    assert hard.info["difficulty"] == "hard" and hard.info["cache"] == "miss"  # its own cache entry
    assert torch.equal(hard.train.y, ds.train.y) and not torch.equal(hard.train.x, ds.train.x)
    assert parse_demo_spec("demo-hard:100") == (100, 20, 20) and parse_demo_spec("demo-hard") == parse_demo_spec("demo")
    with pytest.raises(DataError, match="'demo-hard:N'"):
        load_dataset("demo-hard:lots")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("demo-brutal:70")


# ---------------------------------------------------------------------------- bad input

def _fer(tmp_path, rows, header="emotion,pixels,Usage"):
    return _write(tmp_path / "fer2013.csv", header, rows)


def _bad_cases(tmp_path):
    rows = _rows()
    short = list(rows)
    short[3] = (short[3][0], short[3][1][:-1], short[3][2])  # line 5: 2303 values
    nonnum = _write(tmp_path / "nonnum.csv", "emotion,pixels,Usage", rows)
    text = nonnum.read_text().splitlines()
    parts = text[2].split(",")
    toks = parts[1].split()
    toks[10] = "x7"
    text[2] = ",".join([parts[0], " ".join(toks), parts[2]])
    nonnum.write_text("\n".join(text) + "\n")
    big = list(rows)
    px = big[0][1].copy()
    px[0] = 300
    big[0] = (big[0][0], px, big[0][2])
    label = list(rows)
    label[1] = (9, label[1][1], label[1][2])
    usage = list(rows)
    usage[2] = (usage[2][0], usage[2][1], "Validation")
    notest = [r for r in rows if r[2] != "PrivateTest"]
    return {
        "missing": (tmp_path / "nope.csv", "no such file"),
        "empty": (_write_bytes(tmp_path / "empty.csv", b""), "empty file"),
        "header": (_write(tmp_path / "hdr.csv", "label,image", rows[:2], cols=("emotion", "pixels")), "unknown header"),
        "short": (_write(tmp_path / "short.csv", "emotion,pixels,Usage", short),
                  "short.csv line 5: expected 2304 pixel values, found 2303"),
        "nonnum": (nonnum, "line 3: pixel value 'x7' is not a number"),
        "range": (_write(tmp_path / "range.csv", "emotion,pixels,Usage", big), "line 2: pixel value 300 is outside"),
        "label": (_write(tmp_path / "label.csv", "emotion,pixels,Usage", label), "line 3: emotion '9' is not a class"),
        "usage": (_write(tmp_path / "usage.csv", "emotion,pixels,Usage", usage), "line 4: unknown Usage 'Validation'"),
        "nosplit": (_write(tmp_path / "notest.csv", "emotion,pixels,Usage", notest),
                    "split 'test' has no images"),
        "headeronly": (_write_bytes(tmp_path / "ho.csv", b"emotion,pixels,Usage\n"), "no images"),
    }


def _write_bytes(p, b):
    p.write_bytes(b)
    return p


@pytest.mark.parametrize("case", ["missing", "empty", "header", "short", "nonnum", "range", "label", "usage",
                                  "nosplit", "headeronly"])
def test_bad_csv_one_line_exit_2(tmp_path, capsys, case):
    cases = _bad_cases(tmp_path)
    path, msg = cases[case]
    with pytest.raises(DataError, match=msg.replace("(", r"\(")):
        load_dataset(path)
    assert cli.main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and msg in err and "Traceback" not in err


def test_skip_bad_skips_and_counts(tmp_path, capsys):
    rows = _rows()
    p = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows)
    lines = p.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + ",Training"  # a short row
    lines[3] = "9" + lines[3][1:]  # a bad label
    parts = lines[4].split(",")
    lines[4] = ",".join([parts[0], "abc " + parts[1].split(" ", 1)[1], parts[2]])  # a non-number
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError):
        load_dataset(p)
    ds = load_dataset(p, skip_bad=True)
    assert ds.skipped == 3 and len(ds.train) == 25
    assert cli.main(["data", "check", str(p), "--skip-bad"]) == 0
    assert "skipped bad rows/files: 3" in capsys.readouterr().out


def test_unreadable_image_is_named_and_skippable(tmp_path):
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for c in ("happy", "sad"):
            for i in range(3):
                _img(root / split / c / f"{i}.png")
    bad = root / "train" / "sad" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        load_dataset(root)
    ds = load_dataset(root, skip_bad=True)
    assert ds.skipped == 1 and len(ds.train) + len(ds.val) == 6


def test_image_folder_missing_test_split(tmp_path):
    _img(tmp_path / "imgs" / "train" / "happy" / "a.png")
    with pytest.raises(DataError, match="no 'test' folder"):
        load_dataset(tmp_path / "imgs")


# ---------------------------------------------------------------------------- fernas data

def test_data_demo_csv_and_folder_round_trip(tmp_path, capsys):
    out = tmp_path / "demo.csv"
    sizes = ["--n-train", "70", "--n-val", "14", "--n-test", "14"]
    assert cli.main(["data", "demo", "--out", str(out)] + sizes) == 0
    assert out.read_text().splitlines()[0] == "emotion,pixels,Usage"
    ds = load_dataset(out)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (70, 14, 14)
    ref = load_dataset("demo:70,14,14")
    assert torch.equal(ds.train.x, ref.train.x) and torch.equal(ds.test.y, ref.test.y)
    folder = tmp_path / "demo_folder"
    assert cli.main(["data", "demo", "--out", str(folder), "--format", "folder"] + sizes) == 0
    fds = load_dataset(folder)
    assert fds.classes == FER_CLASSES and len(fds.val) == 14
    assert sorted(fds.test.x.flatten(1).sum(1).tolist()) == sorted(ref.test.x.flatten(1).sum(1).tolist())
    capsys.readouterr()
    # refuses to overwrite, leaves the existing output alone
    before = out.read_bytes()
    assert cli.main(["data", "demo", "--out", str(out)] + sizes) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert cli.main(["data", "demo", "--out", str(folder), "--format", "folder"] + sizes) == 2
    from fernas.io import UMASK

    assert (folder.stat().st_mode & 0o777) == 0o777 & ~UMASK != 0o700  # as mkdir makes it, not mkdtemp's 0700
    capsys.readouterr()
    fifo, link = tmp_path / "fifo", tmp_path / "link.csv"  # empty, but a pipe and a link are not ours to replace
    os.mkfifo(fifo)
    link.symlink_to(tmp_path / "elsewhere.csv")
    for special in (fifo, link):
        assert cli.main(["data", "demo", "--out", str(special)] + sizes) == 2
        assert "is a link or a special file" in capsys.readouterr().err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink() and not (tmp_path / "elsewhere.csv").exists()
    assert cli.main(["data", "demo", "--out", str(out / "x.csv")] + sizes) == 2  # below a file
    assert f"{out}: not a directory (in --out {out / 'x.csv'})" in capsys.readouterr().err
    hard = tmp_path / "hard.csv"
    assert cli.main(["data", "demo", "--out", str(hard), "--difficulty", "hard"] + sizes) == 0
    assert "hard demo faces" in capsys.readouterr().out
    assert torch.equal(load_dataset(hard).train.x, load_dataset("demo-hard:70,14,14").train.x)


def test_data_check_prints_counts_size_and_statistics(tmp_path, capsys):
    p = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", _rows())
    assert cli.main(["data", "check", str(p)]) == 0
    out = capsys.readouterr().out
    assert "angry" in out and "48x48" in out and "mean" in out
    val_line = next(line for line in out.splitlines() if line.startswith("val"))
    assert val_line.split()[1:8] == ["2"] * 7


def test_training_a_genome_a_search_chose_on_the_split_it_tests_on_is_warned(tmp_path, capsys):
    from fernas.train_several import warn_chosen_on_the_test_split

    path = _write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", _rows())
    searched = {"name": "evolved-x", "evolve": {"data": str(path)}}  # a search with the default --fer-test
    warn_chosen_on_the_test_split([searched], load_dataset(path, fer_test="public"))
    assert capsys.readouterr().err == (
        "fernas: warning: evolved-x was chosen by a search that validated on PublicTest (--fer-test private), the "
        "split this training tests on: its test accuracy is not held out; train with --fer-test private\n")
    warn_chosen_on_the_test_split([searched], load_dataset(path))
    other = {"name": "y", "evolve": {"data": str(tmp_path / "other.csv")}}
    warn_chosen_on_the_test_split([other, {"name": "z"}], load_dataset(path, fer_test="public"))
    public = {"name": "p", "evolve": {"data": str(path), "fer_test": "public"}}
    warn_chosen_on_the_test_split([public], load_dataset(path, fer_test="public"))
    assert capsys.readouterr().err == ""
    warn_chosen_on_the_test_split([public], load_dataset(path))
    assert "validated on PrivateTest (--fer-test public)" in capsys.readouterr().err
