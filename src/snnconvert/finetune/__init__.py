"""Fine-tuning of converted SNNs (a stage after conversion): Fast-SNN's layer-wise fine-tuning
towards the quantized ANN."""
from .layerwise import FinetuneReport, LayerFinetune, finetune_layerwise, layer_subgraph

__all__ = ["FinetuneReport", "LayerFinetune", "finetune_layerwise", "layer_subgraph"]
