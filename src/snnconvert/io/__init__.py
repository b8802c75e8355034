"""Files of models: spiking models (`checkpoint.py`: snn.json + weights.safetensors) and weight files
(`weights.py`: safetensors state_dicts, the one state_dict check). Never pickle."""
from .checkpoint import load, save
from .weights import load_weights, save_weights

__all__ = ["load", "load_weights", "save", "save_weights"]
