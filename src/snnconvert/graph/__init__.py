"""The model IR, the bottom layer: Program / Node / Ref / NodeKind, the op table, the activation
matcher and trace() (torch.fx). Everything above reads and writes Programs; this package imports
nothing of snnconvert but errors."""
from .patterns import (ACTIVATION_TYPES, ActivationModule, ClippedReLU, StatefulModule, activation_cap,
                       is_activation_node)
from .program import (ACTIVATION, FUNCTION, INPUT, LAYER, MAXPOOL, METHOD, OUTPUT, Node, NodeKind, Program, Ref,
                      is_addition, map_refs)
from .trace import fx_trace, trace

__all__ = ["ACTIVATION", "ACTIVATION_TYPES", "ActivationModule", "ClippedReLU", "FUNCTION", "INPUT", "LAYER",
           "MAXPOOL", "METHOD", "Node", "NodeKind", "OUTPUT", "Program", "Ref", "StatefulModule", "activation_cap",
           "fx_trace", "is_activation_node", "is_addition", "map_refs", "trace"]
