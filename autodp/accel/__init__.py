"""Faster strategy evaluation (paper 3.3): the screening model F, PTS, and shared embeddings."""

from typing import Any

TECHNIQUES = ("dps", "pts", "crm")


def accel_name(cfg: Any) -> str:
    """A run config's acceleration setting: "none" or the techniques on, e.g. "dps+pts+crm"."""
    on = [t for t in TECHNIQUES if cfg.accel[t].enabled]
    return "+".join(on) or "none"
