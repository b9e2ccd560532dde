"""Datasets: the image tasks of paper 000 (brightness prediction, image approximation)."""

from .images import BUNDLED, load_image
from .tasks import TASKS, TaskData, approx_samples, brightness_samples, load_task, split_indices

__all__ = ["BUNDLED", "load_image", "TASKS", "TaskData", "approx_samples", "brightness_samples", "load_task", "split_indices"]
