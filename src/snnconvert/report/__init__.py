"""Reports: terminal tables, one-screen summaries, plots and JSON of simulation results."""
from .plots import plot_accuracy_vs_T, plot_evaluation, plot_firing_rates, plot_layer_errors
from .summary import evaluation_summary, threshold_granularity, threshold_summary
from .tables import accuracy_table, powers_of_two

__all__ = ["accuracy_table", "evaluation_summary", "plot_accuracy_vs_T", "plot_evaluation", "plot_firing_rates",
           "plot_layer_errors", "powers_of_two", "threshold_granularity", "threshold_summary"]
