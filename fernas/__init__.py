"""fernas: genetic-algorithm neural architecture search for facial emotion recognition.

Data flow (one module per stage): data -> augment -> genome -> model -> train -> evolve/search
-> evaluate/report.  See CONTRIBUTING.md for the module map.
"""

__version__ = "0.1.0"
