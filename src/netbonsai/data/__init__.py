"""Tasks and datasets: :class:`Task` (named splits, loss, scale, metadata) and its builders: the image tasks of paper 000 (brightness prediction, image approximation), MNIST-format IDX,
the Reber grammar task of paper 001, the user's own tables (CSV, NPZ, DataFrame, arrays) and
scikit-learn's bundled data sets."""

from .idx import MnistData, download_mnist, load_mnist, read_idx, write_idx
from .images import BUNDLED, load_image
from .reber import (
    REBER_LETTERS, REBER_TRANSITIONS, ReberData, encode, is_reber, length_distribution, make_reber,
    negative_string, reber_string)
from .specs import SPEC_HELP, TaskSpec, idx_task, parse_task_spec, reber_task, task_from_spec
from .tables import (
    SKLEARN_DATASETS, class_probabilities, data_task, decode_outputs, prepare_rows, sklearn_task, table_task)
from .task import Split, Task, TaskData
from .tasks import TASKS, approx_samples, brightness_samples, load_task, split_indices

__all__ = [
    "MnistData", "download_mnist", "load_mnist", "read_idx", "write_idx",
    "BUNDLED", "load_image", "TASKS", "Split", "Task", "TaskData", "SPEC_HELP", "TaskSpec", "idx_task", "reber_task",
    "parse_task_spec", "task_from_spec", "approx_samples", "brightness_samples", "load_task",
    "split_indices",
    "SKLEARN_DATASETS", "class_probabilities", "data_task", "decode_outputs", "prepare_rows", "sklearn_task",
    "table_task",
    "REBER_LETTERS", "REBER_TRANSITIONS", "ReberData", "encode", "is_reber", "length_distribution",
    "make_reber", "negative_string", "reber_string"]
