"""Reports: terminal tables, plots and JSON of simulation results."""
from .plots import plot_accuracy_vs_T, plot_layer_errors
from .tables import accuracy_table, powers_of_two

__all__ = ["accuracy_table", "plot_accuracy_vs_T", "plot_layer_errors", "powers_of_two"]
