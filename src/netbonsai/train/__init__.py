"""Training: ``fit()`` with minibatch Adam or full-batch L-BFGS over population models, ``evaluate()``."""

from .fit import Budget, FitResult, TrainerConfig, averaged_fit, fit
from .lbfgs import lbfgs
from .losses import evaluate, get_loss, population_outputs
from .sequences import evaluate_sequences, fit_sequences, length_batches

__all__ = ["Budget", "FitResult", "TrainerConfig", "averaged_fit", "fit", "lbfgs", "evaluate", "get_loss", "population_outputs",
           "evaluate_sequences", "fit_sequences", "length_batches"]
