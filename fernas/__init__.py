"""fernas: genetic-algorithm neural architecture search for facial emotion recognition.

Data flow (one module per stage): data -> augment -> genome -> model -> train -> evolve/search
-> evaluate/report.  See docs/design.md for the module map.
"""

__version__ = "0.1.0"


def load_run(path):
    """An evolve or training run directory for analysis: trials, logbook and best genomes of an
    evolve run, history and metrics of a training run (`fernas.runs.load_run`)."""
    from fernas.runs import load_run as _load

    return _load(path)
