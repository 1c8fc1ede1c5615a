"""Every notebook in exercises/ survives reading pauses and out-of-order re-runs (see tests/rerun.py)."""
from rerun import one_class_per_notebook

one_class_per_notebook("exercises", globals())
