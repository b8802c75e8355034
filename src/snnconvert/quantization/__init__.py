"""Quantized activations for training the QANN that Fast-SNN converts."""
from .quantizer import QuantReLU

__all__ = ["QuantReLU"]
