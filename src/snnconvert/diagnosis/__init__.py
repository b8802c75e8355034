"""Where a converted network loses the ANN's accuracy: per-layer errors against the ANN over time."""
from .diagnose import Diagnosis, LayerDiagnosis, diagnose, checkpoints

__all__ = ["Diagnosis", "LayerDiagnosis", "checkpoints", "diagnose"]
