"""Datasets: the image tasks of paper 000 (brightness prediction, image approximation), MNIST-format IDX."""

from .idx import MnistData, download_mnist, load_mnist, read_idx, write_idx
from .images import BUNDLED, load_image
from .tasks import TASKS, TaskData, approx_samples, brightness_samples, load_task, split_indices

__all__ = [
    "MnistData", "download_mnist", "load_mnist", "read_idx", "write_idx",
    "BUNDLED", "load_image", "TASKS", "TaskData", "approx_samples", "brightness_samples", "load_task", "split_indices"]
