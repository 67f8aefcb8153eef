"""Operators register themselves on import; importing the package makes them all available."""
from autodp.ops import cleaning, generation, optimization, selection  # noqa: F401
