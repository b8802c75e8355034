"""Graph capture (torch.fx) and the conversion of ReLU networks into spiking ones."""
from .convert import convert
from .graph import Program, trace

__all__ = ["Program", "convert", "trace"]
