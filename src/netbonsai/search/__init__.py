"""Genetic architecture search (paper 001 section 4.4).

- :mod:`.genotype`: DAG genotypes of CNN operations (conv 3x3/5x5/7x7 with channels, pools, sum,
  concat, skip), validation, random genotypes, a canonical key;
- :mod:`.decode`: a genotype as a trainable CNN (:class:`GenotypeNet`);
- :mod:`.operators`: mutations (relabel, insert a sub-graph) and crossovers (sub-paths, bridge,
  channel averaging);
- :mod:`.dag_genotype`: the second genotype kind, neuron-level DagNet topologies whose
  generation trains as one padded DagNet population;
- :mod:`.features`: the structural features of the performance predictor;
- :mod:`.predictor`: the predictor (scikit-learn regressors), its meta-dataset records and its
  evaluation against parameter-count, depth and graph-feature baselines;
- :mod:`.evolution`: the genetic loop (cull the worst, breed by tournament, estimate part of
  each generation with the predictor) and random search, both resumable.

Layering: ``search`` imports ``nets``, ``train``, ``data`` and ``analysis.graph_features``.
"""

from .dag_genotype import (
    TOPOLOGY_MUTATIONS, TopologyGenotype, add_neuron, add_synapse, live_params, random_topology, remove_neuron,
    remove_synapse, to_dagnet, train_generation, validate_topology,
)
from .decode import GenotypeNet, count_params, decode
from .evolution import (
    EvolutionResult, EvolutionSettings, GenotypeKind, Member, Predictor, RecordAdapter, conv_kind, evolve,
    random_search,
)
from .features import FEATURE_NAMES, baseline_features, feature_matrix, genotype_features, vertex_channels
from .genotype import CHANNELS, CONVS, OPS, Genotype, random_genotype, validate
from .operators import (
    CROSSOVERS, MUTATIONS, bridges, crossover_average, crossover_bridge, crossover_subpaths, insert_subgraph,
    layer_index, relabel,
)
from .predictor import AccuracyPredictor, evaluate_predictor, make_record, records_matrix

__all__ = [
    "CHANNELS", "CONVS", "CROSSOVERS", "FEATURE_NAMES", "MUTATIONS", "OPS", "TOPOLOGY_MUTATIONS",
    "AccuracyPredictor", "EvolutionResult", "EvolutionSettings", "Genotype", "GenotypeKind", "GenotypeNet", "Member",
    "Predictor", "RecordAdapter", "TopologyGenotype",
    "add_neuron", "add_synapse", "baseline_features", "bridges", "conv_kind", "count_params", "crossover_average",
    "crossover_bridge", "crossover_subpaths", "decode", "evaluate_predictor", "evolve", "feature_matrix",
    "genotype_features", "insert_subgraph", "layer_index", "live_params", "make_record", "random_genotype",
    "random_search", "random_topology", "records_matrix", "relabel", "remove_neuron", "remove_synapse", "to_dagnet",
    "train_generation", "validate", "validate_topology", "vertex_channels",
]
