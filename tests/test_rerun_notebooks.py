"""Every notebook in notebooks/ survives reading pauses and out-of-order re-runs (see tests/rerun.py)."""
from rerun import one_class_per_notebook

one_class_per_notebook("notebooks", globals())
