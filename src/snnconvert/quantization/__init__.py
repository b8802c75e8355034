"""Fast-SNN quantized ANNs: the QuantReLU activation, quantize() and progressive training."""
from .progressive import PROGRESSIVE_BITS, progressive_schedule, train_progressive
from .quantize import alphas, quantize, quantized_bits, set_bits
from .quantizer import QuantReLU, check_bits

__all__ = ["PROGRESSIVE_BITS", "QuantReLU", "alphas", "check_bits", "progressive_schedule", "quantize",
           "quantized_bits", "set_bits", "train_progressive"]
