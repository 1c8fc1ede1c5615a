"""Every notebook in notebooks/ survives reading pauses and out-of-order re-runs (see tests/rerun.py)."""
from rerun import parametrize_notebooks, stress


@parametrize_notebooks("notebooks")
def test_survives_pauses_and_out_of_order_reruns(path):
    stress(path)
