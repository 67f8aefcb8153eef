"""Faster strategy evaluation (paper 3.3): the screening model F, PTS, and shared embeddings."""
