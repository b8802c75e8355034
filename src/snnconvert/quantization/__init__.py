"""Fast-SNN quantized ANNs: the QuantReLU activation, quantize(), progressive training and
layer-wise fine-tuning of the converted SNN."""
from .finetune import FinetuneReport, LayerFinetune, finetune_layerwise
from .progressive import train_progressive
from .quantize import alphas, quantize, quantized_bits, set_bits
from .quantizer import QuantReLU

__all__ = ["FinetuneReport", "LayerFinetune", "QuantReLU", "finetune_layerwise", "alphas", "quantize", "quantized_bits", "set_bits", "train_progressive"]
