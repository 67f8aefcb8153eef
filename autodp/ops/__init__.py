"""Operators register themselves on import; importing the package makes them all available."""
from autodp.ops import cleaning  # noqa: F401
