"""What snnconvert's NIR files mean, shared by export and import.

NIR (the Neuromorphic Intermediate Representation, package `nir` >= 1.0.6) describes an IF neuron as
    v <- v + r * x;   z = [v > v_threshold];   v <- v_reset where z = 1
in continuous time; snnconvert writes and reads it as one time step per NIR step (dt = 1, r = 1).
Spikes are 0/1, so each layer's threshold (its spike amplitude) is folded into the weights around it
and every IF node fires at 1. snnconvert's neurons fire on v >= theta, NIR's on v > v_threshold: the
files say v_threshold = FIRE_ABOVE = 1 - 2**-24, the largest float32 below 1, so that in float32
arithmetic v > FIRE_ABOVE exactly when v >= 1 and the spike trains are the same.
"""
from __future__ import annotations

from types import ModuleType
from typing import Callable

import numpy as np

FIRE_ABOVE = np.nextafter(np.float32(1.0), np.float32(0.0))  # 0.99999994 = 1 - 2**-24
FORMAT = "snnconvert.nir"  # graph metadata "format": a file written by export_nir
FORMAT_VERSION = 1
RESET_KEY = "reset"  # IF node metadata: "zero" (what NIR's IF does) or "subtract" (the soft-reset opt-in)
V0_KEY = "v0"  # IF node metadata (opt-in only): the initial potential in units of the threshold, V(0) / theta
SUBTRACT, ZERO = "subtract", "zero"


def require_nir(error: Callable[[str], Exception], doing: str) -> ModuleType:
    """The `nir` module, else `error(message)` saying how to install it."""
    try:
        import nir
    except ImportError:
        raise error(f"{doing} needs the nir package (>= 1.0.6): pip install 'snnconvert[nir]' "
                    "(or pip install 'nir>=1.0.6,<2')") from None
    return nir
