"""Files of models: spiking models (`checkpoint.py`: snn.json + weights.safetensors) and weight files
(`weights.py`: safetensors state_dicts, the one state_dict check). Never pickle."""
from .checkpoint import DESCRIPTION, WEIGHTS, load, save
from .weights import load_weights, save_weights

__all__ = ["DESCRIPTION", "WEIGHTS", "load", "load_weights", "save", "save_weights"]
