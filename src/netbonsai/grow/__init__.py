"""The grow-and-prune search of paper 000: synapse removal, neuron addition, the outer loop."""

from .config import GrowConfig
from .search import FrontPoint, GrowResult, SearchState, grow, start_network
from .steps import addition_step, lowest_synapses, removal_scores, removal_step

__all__ = [
    "GrowConfig", "FrontPoint", "GrowResult", "SearchState", "grow", "start_network",
    "addition_step", "lowest_synapses", "removal_scores", "removal_step",
]
