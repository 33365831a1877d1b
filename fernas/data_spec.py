"""What a command line and a run's records need to know about the data settings, apart from
`fernas.data`, which loads data with torch: `fernas --help`, every command's parsing and the
run-directory readers import no torch."""

from __future__ import annotations

# A FER2013 CSV's held-out splits: which Usage is the test split (the other is validation).
# private: test = PrivateTest (Kaggle's final ranking); public: test = PublicTest, as the VGG
# paper's code ran.
FER_TEST_CHOICES = ("private", "public")
FER_TEST_DEFAULT = "private"

# Data settings a run's config.json may lack: it was written before the flag existed and read
# its data this way.
DATA_DEFAULTS_OF_OLDER_RUNS = {"fer_test": FER_TEST_DEFAULT}
