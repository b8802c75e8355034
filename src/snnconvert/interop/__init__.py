"""Exchange with other spiking-network tools: NIR graphs (the `nir` package, an optional dependency:
pip install 'snnconvert[nir]'). `export_nir` writes a converted network, `import_nir` reads one into a
SpikingModel. Sits beside io/: imports io, simulation, neurons, graph and the foundation."""
from .nir_export import NirExport, ResetLoss, export_nir, lossy_layers, measure_reset_loss
from .nir_import import import_nir

__all__ = ["NirExport", "ResetLoss", "export_nir", "import_nir", "lossy_layers", "measure_reset_loss"]
