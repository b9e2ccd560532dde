"""netbonsai: grow and prune neural networks into the smallest architecture that meets an error target."""

from typing import Any

from .errors import InputError, ModelFileError, NetbonsaiError
from .nets import DagNet, load, save

__version__ = "0.1.0"


def compare(task: str, methods: Any, out: Any, **options: Any) -> Any:
    """Methods against the dense sweep on one task: see :func:`netbonsai.experiments.compare_methods.compare`."""
    from .experiments.compare_methods import compare as run

    return run(task, methods, out, **options)


__all__ = ["DagNet", "InputError", "ModelFileError", "NetbonsaiError", "__version__", "compare", "load", "save"]


def __getattr__(name: str) -> Any:
    """``GrowRegressor`` / ``GrowClassifier`` (:mod:`netbonsai.estimators`) and ``MethodRegressor``
    / ``MethodClassifier`` (:mod:`netbonsai.estimators_methods`), imported on first use so that
    ``import netbonsai`` does not import scikit-learn."""
    if name in ("GrowRegressor", "GrowClassifier"):
        from . import estimators

        return getattr(estimators, name)
    if name in ("MethodRegressor", "MethodClassifier"):
        from . import estimators_methods

        return getattr(estimators_methods, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
