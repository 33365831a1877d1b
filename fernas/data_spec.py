"""What a command line and a run's records need to know about the data settings, apart from
`fernas.data`, which loads data with torch: `fernas --help`, every command's parsing and the
run-directory readers import no torch."""

from __future__ import annotations

# A FER2013 CSV's held-out splits: which Usage is the test split (the other is validation).
# private: test = PrivateTest (Kaggle's final ranking); public: test = PublicTest, as the VGG
# paper's code ran.
FER_TEST_CHOICES = ("private", "public")
FER_TEST_DEFAULT = "private"
_SPLIT_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def split_usage(fer_test: str = FER_TEST_DEFAULT) -> dict[str, str]:
    """Split -> the Usage it is read from: with "public" val and test trade places."""
    if fer_test == "public":
        return {**_SPLIT_USAGE, "val": _SPLIT_USAGE["test"], "test": _SPLIT_USAGE["val"]}
    return dict(_SPLIT_USAGE)


def fer_test_of(test_usage: str) -> str:
    """The --fer-test that reads `test_usage` as the test split."""
    return next(c for c in FER_TEST_CHOICES if split_usage(c)["test"] == test_usage)

# Data settings a run's config.json may lack: it was written before the flag existed and read
# its data this way.
DATA_DEFAULTS_OF_OLDER_RUNS = {"fer_test": FER_TEST_DEFAULT}
