"""beauty-pipeline: a rerunnable, auditable study of what face-ranking classifiers really look at."""

__version__ = "0.1.0"
