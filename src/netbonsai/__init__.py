"""netbonsai: grow and prune neural networks into the smallest architecture that meets an error target."""

from .errors import InputError, ModelFileError, NetbonsaiError
from .nets import DagNet, load, save

__version__ = "0.1.0"

__all__ = ["DagNet", "InputError", "ModelFileError", "NetbonsaiError", "__version__", "load", "save"]
