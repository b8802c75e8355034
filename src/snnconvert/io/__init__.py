"""Saving and loading converted models (safetensors + JSON; never pickle)."""
from .checkpoint import load, save

__all__ = ["load", "save"]
