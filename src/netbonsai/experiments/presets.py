"""Presets for the image tasks: the data split, the search settings and the dense baseline grid.

``paper`` follows paper 000's settings (the Keras grids of its tables, N1/N2/N3/eps, the 4-6-6-1
and 2-4-4-1 starting networks) on the full training split; ``quick`` keeps the algorithm and
the grid but trains on a subsample with smaller budgets so a comparison runs in minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Mapping, TypeVar

from ..errors import InputError
from ..grow.config import GrowConfig
from ..train import TrainerConfig
from ..methods.magnitude import MagnitudeSettings

PRESETS = ("quick", "paper")
T = TypeVar("T")


def pick_preset(preset: str, presets: Mapping[str, Callable[[], T]]) -> T:
    """The settings a preset name stands for: the one preset mechanism of every command and
    experiment (each keeps a table of preset name -> settings builder). An unknown name is one
    :class:`InputError` listing the names there are."""
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    return presets[preset]()


def _plain(value: Any) -> Any:
    """Tuples (nested too) as lists: the form a config takes in JSON."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def reproduce_config(kind: str, preset: str, seed: int, data: str, split: Mapping[str, Any],
                     settings: Any) -> dict[str, Any]:
    """The config.json of a ``reproduce`` run: what ran, on which data and split, with which
    settings (a dataclass), so that ``--resume`` can refuse a run started differently."""
    from .. import __version__

    return {"command": "reproduce", "experiment": kind, "preset": preset, "seed": seed, "data": data,
            "netbonsai_version": __version__, "split": dict(split),
            "settings": {k: _plain(v) for k, v in asdict(settings).items()}}


def with_settings(settings: T, overrides: Mapping[str, Any], what: str, validate: Callable[[T], None] | None = None) -> T:
    """``settings`` (a frozen dataclass) with ``overrides`` (field -> value) applied and checked:
    an unknown field is one :class:`InputError` naming it (``unknown WHAT setting 'x'``), then
    ``validate`` (or the dataclass's own ``__post_init__``) checks the values."""
    if not overrides:
        return settings
    known = {f.name for f in fields(settings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"unknown {what} setting {unknown[0]!r}; it takes {', '.join(sorted(known))}")
    try:
        settings = replace(settings, **dict(overrides))
    except TypeError as exc:
        raise InputError(f"invalid {what} setting: {exc}") from None
    if validate is not None:
        validate(settings)
    return settings

# Paper 000, Example 1: the Keras networks of the brightness table (N1-N2).
BRIGHTNESS_GRID = (
    (5, 5), (7, 6), (8, 7), (9, 7), (8, 9), (10, 11), (12, 11),
    (12, 14), (15, 15), (17, 17), (20, 19), (20, 20), (22, 22), (25, 25),
)
# Paper 000, Example 2: 4 <= N1, N2 <= 40; square networks spanning that range.
APPROX_GRID = tuple((w, w) for w in (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40))
# The quick preset thins the approximation grid (the large networks dominate its cost).
APPROX_GRID_QUICK = tuple((w, w) for w in (4, 5, 6, 7, 8, 10, 12, 16, 20, 28, 40))


@dataclass(frozen=True)
class DataSettings:
    """How a task's samples are split and subsampled."""

    val_fraction: float = 0.2
    max_train: int | None = None
    max_val: int | None = None
    split_seed: int = 0


@dataclass(frozen=True)
class TaskSettings:
    """Everything a compare/grow/baseline run on an image task needs."""

    task: str
    preset: str
    data: DataSettings
    grow: GrowConfig
    dense_grid: tuple[tuple[int, ...], ...]
    dense_epochs: int  # the same budget as the search's starting network
    polish_epochs: int = 0  # final training of every reported network, dense and grown alike
    polish_points: int = 12  # at most this many front networks are polished and reported
    # networks per polish population, each population one executor job. 1: every front network
    # is polished alone, exactly as each dense baseline is, and the jobs spread over the cores
    # (on CPU a population of full-batch trainings costs the sum of its members anyway)
    polish_group: int = 1
    # compare only: the dense networks (and the magnitude baseline's) train as long as the most
    # trained network of the search's front, so they start after the search (dense.epochs=match)
    dense_match: bool = False
    # the second baseline: iterative magnitude pruning of a dense grid network (compare only)
    magnitude: MagnitudeSettings = field(default_factory=MagnitudeSettings)
    extras: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"  # where tensors live (resolved, e.g. "cuda"); recorded, not part of to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "preset": self.preset,
            "data": asdict(self.data),
            "grow": self.grow.to_dict(),
            "dense": {"grid": [list(h) for h in self.dense_grid], "epochs": "match" if self.dense_match else self.dense_epochs,
                      "magnitude": self.magnitude.to_dict()},
            "polish": {"epochs": self.polish_epochs, "points": self.polish_points, "group": self.polish_group},
        }


# MLPs for MNIST-style tasks (idx:DIR): one and two hidden layers spanning 8-300 units
IDX_GRID = ((8,), (16,), (32,), (64,), (16, 16), (32, 32), (100,), (300, 100))
IDX_GRID_QUICK = ((8,), (16,), (32,), (64,), (16, 16), (32, 32))


def idx_settings(preset: str) -> TaskSettings:
    """MNIST-style classification (``idx:DIR``): minibatch Adam on cross-entropy, ReLU MLPs.

    Chosen so that a quick comparison of the pruning methods runs in minutes on 2 cores: a
    10,000-image training subsample, 2,000 held-out training images for validation (the test
    images are never used for a decision), 3 epochs for a dense network and 1 after every
    pruning round (what paper 001's schedules retrain), and a 1-epoch polish for every
    reported network. ``paper``: the full training split, 10 epochs, the 300-100 network.
    """
    trainer = TrainerConfig(method="adam", loss="cross_entropy", lr=1e-3, batch_size=64)
    return pick_preset(preset, {
        "quick": lambda: TaskSettings(
            task="idx", preset="quick", data=DataSettings(max_train=10_000, max_val=2_000),
            grow=GrowConfig(hidden=(32,), activation="relu", start_epochs=3, trial_epochs=1, grow_epochs=1,
                            max_params=30_000, max_cycles=3, trainer=trainer),
            dense_grid=IDX_GRID_QUICK, dense_epochs=3, polish_epochs=1),
        "paper": lambda: TaskSettings(
            task="idx", preset="paper", data=DataSettings(max_val=5_000),
            grow=GrowConfig(hidden=(100,), activation="relu", start_epochs=10, trial_epochs=1, grow_epochs=1,
                            max_params=300_000, max_cycles=10, trainer=trainer),
            dense_grid=IDX_GRID, dense_epochs=10, polish_epochs=2),
    })


# MLPs for the user's tables (and scikit-learn's bundled ones): 2 to 64 units, one and two layers
TABLE_GRID = ((2,), (4,), (8,), (16,), (32,), (64,), (4, 4), (8, 8), (16, 16), (32, 32))


def table_settings(preset: str) -> TaskSettings:
    """Tables (``--data FILE --target COL``, ``sklearn:NAME``): full-batch L-BFGS (the task sets
    its loss: MSE for regression, cross-entropy for classification), tanh MLPs, a 60/20/20
    train/validation/test split. ``quick`` trains a dense network for 300 iterations and keeps
    the search to 10 added neurons; ``paper`` uses the image tasks' paper budgets. Every training
    of the run gets the same L2 penalty, its strength chosen per run on the validation split
    (:func:`netbonsai.train.regularization.choose_l2`; ``--set trainer.l2=X`` fixes it). Chosen so that
    a quick comparison of a 1,000-row table runs in minutes on 2 cores; no figure of any one data
    set was used to set them."""
    def build(grow: GrowConfig, epochs: int, polish: int) -> TaskSettings:
        return TaskSettings(task="table", preset=preset, data=DataSettings(), grow=grow, dense_grid=TABLE_GRID,
                            dense_epochs=epochs, polish_epochs=polish, extras={"test_fraction": 0.2, "l2": "auto"})

    return pick_preset(preset, {
        "quick": lambda: build(GrowConfig(hidden=(4,), start_epochs=300, trial_epochs=10, grow_epochs=60,
                                          max_params=1000, max_cycles=10, attempt_samples=4096), 300, 100),
        "paper": lambda: build(GrowConfig(hidden=(8,), start_epochs=2000, trial_epochs=30, grow_epochs=200,
                                          max_params=3000, max_cycles=30), 2000, 500),
    })


def l2_record(settings: TaskSettings) -> dict[str, Any]:
    """The config entry that records how the run's L2 strength was chosen (empty when it was not)."""
    choice = settings.extras.get("l2_choice")
    return {"l2_choice": choice} if choice else {}


def task_settings(task: str, preset: str = "quick") -> TaskSettings:
    """The settings of ``preset`` for ``task`` (``brightness``, ``approx`` or ``idx``)."""
    pick_preset(preset, {name: lambda: None for name in PRESETS})  # the same check and message for every task
    if task == "idx":
        return idx_settings(preset)
    if task in ("table", "sklearn"):
        return table_settings(preset)
    if task == "brightness":
        hidden, grid = (6, 6), BRIGHTNESS_GRID
    elif task == "approx":
        hidden, grid = (4, 4), APPROX_GRID
    else:
        raise InputError(f"unknown task {task!r}; choose brightness or approx")
    if preset == "quick":
        grid = APPROX_GRID_QUICK if task == "approx" else grid
        data = DataSettings(max_train=60_000)
        grow = GrowConfig(
            hidden=hidden, start_epochs=1000, trial_epochs=20, grow_epochs=150, max_params=300, max_cycles=10,
        )
        epochs, polish = 1000, 300
    else:
        data = DataSettings()
        grow = GrowConfig(
            hidden=hidden, start_epochs=4000, trial_epochs=50, grow_epochs=400, max_params=400, max_cycles=30,
        )
        epochs, polish = 4000, 1000
    return TaskSettings(
        task=task, preset=preset, data=data, grow=grow, dense_grid=grid, dense_epochs=epochs, polish_epochs=polish
    )
