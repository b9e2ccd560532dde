"""The ``--set`` routing of the image runs: RunOptions, which key goes to which method or baseline setting."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from ..data.specs import parse_task_spec
from ..errors import InputError
from ..grow.config import GrowConfig
from ..runtime import resolve_device
from .presets import TaskSettings, task_settings


@dataclass
class RunOptions:
    """Command-line level choices shared by grow, baseline and compare."""

    task: str
    image: str | None = None
    preset: str = "quick"
    seed: int | None = None
    max_params: int | None = None
    max_seconds: float | None = None
    executor: str = "process"
    command: str = "compare"
    seeds: int = 1  # compare: independent comparisons with seeds seed, seed + 1, ... (pooled)
    device: str = "auto"  # torch device: auto (a GPU when present), cpu, cuda, cuda:N
    overrides: dict[str, Any] = field(default_factory=dict)  # GrowConfig fields, "trainer.x" for the trainer
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # compare --methods: NAME -> {key: value}
    data: str | None = None  # a table file (CSV, TSV, NPZ) instead of a task name
    target: tuple[str, ...] = ()  # its target column(s)
    task_type: str | None = None  # regression | classification (None: decided from the target)
    drop_missing: bool = False  # drop rows with empty cells instead of refusing them
    val_fraction: float | None = None  # --val-fraction (None: the preset's)
    test_fraction: float | None = None  # --test-fraction, tables only (None: the preset's)

    def task_kind(self) -> str:
        """``table`` for --data, else the task name's kind (validated)."""
        if self.data is not None:
            if self.task:
                raise InputError(f"give either a task ({self.task}) or --data {self.data}, not both")
            return "table"
        if not self.task:
            raise InputError("name a task (brightness, approx, idx:DIR, sklearn:NAME) or give --data FILE --target COL")
        if self.target or self.task_type or self.drop_missing:
            raise InputError("--target, --task-type and --drop-missing apply to --data FILE")
        return parse_task_spec(self.task, self.image).kind

    def settings(self) -> TaskSettings:
        """The preset's settings with the command-line overrides applied (validated)."""
        kind = self.task_kind()
        settings = task_settings(kind, self.preset)
        config = settings.grow.to_dict()
        overrides, self.method_overrides, deprecated = split_overrides(self.overrides)
        if self.command == "baseline":
            self._check_baseline_options(overrides)
        for key, value in overrides.items():
            if key.startswith("magnitude.") and self.command != "compare":
                raise InputError(f"{key} sets the magnitude-pruning baseline, which only compare runs")
            if key == "dense.epochs" and value == "match" and self.command != "compare":
                raise InputError("dense.epochs=match trains the dense networks as long as the search's; only compare runs both")
            if key in BASELINE_OVERRIDES:
                settings = BASELINE_OVERRIDES[key](settings, value)
            elif key.split(".", 1)[0] in ("dense", "magnitude", "polish"):
                raise InputError(f"unknown baseline setting {key!r}; choose one of {', '.join(BASELINE_OVERRIDES)}")
            elif key.startswith("trainer."):
                config["trainer"] = {**config["trainer"], key.split(".", 1)[1]: value}
            else:
                config[key] = value
        try:
            grow_config = GrowConfig.from_dict(config)
        except TypeError as exc:
            raise InputError(f"invalid --set value: {exc}") from None
        grow_config = grow_config.with_overrides(seed=self.seed, max_params=self.max_params, max_seconds=self.max_seconds)
        if "start_epochs" in overrides and "dense.epochs" not in overrides:
            # the dense networks keep the starting network's budget (the same budget policy)
            settings = replace(settings, dense_epochs=grow_config.start_epochs)
        settings = replace(settings, grow=grow_config, device=resolve_device(self.device))
        settings = self._with_fractions(settings, kind)
        if "trainer.l2" in overrides and settings.extras.get("l2") == "auto":
            settings = replace(settings, extras={**settings.extras, "l2": "given"})  # the user's value stands
        for key in deprecated:  # once the settings are valid: a bad value is the one line printed
            warnings.warn(f"--set {key} is deprecated; write --set grow.{key} (the grow method's setting)",
                          FutureWarning, stacklevel=2)
        return settings

    def _with_fractions(self, settings: TaskSettings, kind: str) -> TaskSettings:
        """``settings`` with --val-fraction and --test-fraction applied (validated, one line each)."""
        val, test = self.val_fraction, self.test_fraction
        if val is not None:
            if kind == "idx":
                raise InputError("--val-fraction does not apply to idx:DIR (its validation split is a number of images)")
            if not 0 < val < 1:
                raise InputError(f"--val-fraction must be in (0, 1), got {val}")
            settings = replace(settings, data=replace(settings.data, val_fraction=float(val)))
        if test is not None:
            if kind not in ("table", "sklearn"):
                raise InputError("--test-fraction applies to tables (--data FILE, sklearn:NAME)")
            if not 0 <= test < 1:
                raise InputError(f"--test-fraction must be in [0, 1), got {test}")
            settings = replace(settings, extras={**settings.extras, "test_fraction": float(test)})
        if kind in ("table", "sklearn"):
            total = settings.data.val_fraction + settings.extras.get("test_fraction", 0.2)
            if total >= 1:
                raise InputError(f"--val-fraction and --test-fraction leave no training rows (they sum to {total:g})")
        return settings

    def _check_baseline_options(self, overrides: dict[str, Any]) -> None:
        """baseline runs no search: refuse the options that would only change one (they would be
        silently ignored otherwise)."""
        for flag, value in (("--max-params", self.max_params), ("--max-seconds", self.max_seconds)):
            if value is not None:
                raise InputError(f"{flag} limits the search, which baseline does not run (use compare or grow)")
        search_keys = search_only_keys()
        for key in overrides:
            if key in search_keys:  # an unknown key is refused as unknown below, as for every command
                raise InputError(f"--set {key} changes the search, which baseline does not run; baseline takes "
                                 f"dense.grid, dense.epochs, polish.epochs, trainer.* and "
                                 f"{', '.join(sorted(BASELINE_GROW_KEYS))}")
        if "start_epochs" in overrides and "dense.epochs" in overrides:
            raise InputError("--set start_epochs sets the dense networks' budget only without dense.epochs: give one of them")


SHARED_PREFIXES = ("trainer", "dense", "magnitude", "polish")


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """``--set`` keys as (the search's and the shared settings', the other methods' by name, the
    flat research keys used).

    ``grow.KEY`` is the grow-and-prune search's ``KEY`` (a GrowConfig field); ``trainer.*``,
    ``dense.*``, ``magnitude.*`` and ``polish.*`` are shared settings; ``NAME.KEY`` of another
    registered method (``loss-aware.eps``) goes to that method. A flat research key of the
    search (``n_attempts``) still works, with a one-line deprecation notice.
    """
    from ..methods.registry import method_names

    search, methods, deprecated = {}, {}, []
    research = search_only_keys()
    names = set(method_names()) - {"grow", "magnitude"}
    for key, value in overrides.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix == "grow":
            search[rest] = value
        elif dot and prefix in names and prefix not in SHARED_PREFIXES:
            methods.setdefault(prefix, {})[rest] = value
        else:
            if not dot and key in research:
                deprecated.append(key)
            search[key] = value
    return search, methods, deprecated


def _dense_grid(settings: TaskSettings, value: Any) -> TaskSettings:
    """``--set dense.grid=[[10],[5,5],...]``: the baseline's hidden-layer sizes, one list per network."""
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(h, list) and h and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in h)
            for h in value
        )
    ):
        raise InputError(f"dense.grid must be a non-empty list of hidden-layer size lists, e.g. [[10], [5, 5]]; got {value!r}")
    return replace(settings, dense_grid=tuple(tuple(h) for h in value))


def _epochs_setting(name: str, field_name: str, allowed: str = "") -> Callable[[TaskSettings, Any], TaskSettings]:
    """``--set polish.epochs=N`` (and the number of ``dense.epochs``): a training budget >= 0
    (0, like start_epochs=0: untrained), validated; ``allowed`` names other accepted values."""

    def apply(settings: TaskSettings, value: Any) -> TaskSettings:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{name} must be an integer >= 0{allowed}, got {value!r}")
        return replace(settings, **{field_name: value})

    return apply


_dense_budget = _epochs_setting("dense.epochs", "dense_epochs", " or match")


def _dense_epochs(settings: TaskSettings, value: Any) -> TaskSettings:
    """``--set dense.epochs=N``, or ``match``: as long as the search's most trained front network."""
    if value == "match":
        return replace(settings, dense_match=True)
    return replace(_dense_budget(settings, value), dense_match=False)


def _magnitude_setting(name: str) -> Callable[[TaskSettings, Any], TaskSettings]:
    """``--set magnitude.NAME=VALUE``: a field of the magnitude-pruning baseline (validated)."""

    def apply(settings: TaskSettings, value: Any) -> TaskSettings:
        return replace(settings, magnitude=replace(settings.magnitude, **{name: value}))

    return apply


# search settings that the dense sweep also reads: its networks' activation and seed, and the
# start network's budget (the dense budget unless dense.epochs is given)
BASELINE_GROW_KEYS = frozenset({"activation", "seed", "start_epochs"})


def search_only_keys() -> set[str]:
    """GrowConfig fields that only the search reads (baseline refuses them and ignores their
    recorded values on resume)."""
    return {f.name for f in fields(GrowConfig)} - BASELINE_GROW_KEYS - {"trainer"}


# --set keys that change the baselines or the final polish rather than the search. Without
# dense.epochs the dense networks get the starting network's budget (start_epochs), overridden or not.
BASELINE_OVERRIDES: dict[str, Callable[[TaskSettings, Any], TaskSettings]] = {
    "dense.grid": _dense_grid,
    "dense.epochs": _dense_epochs,
    "polish.epochs": _epochs_setting("polish.epochs", "polish_epochs"),
    **{f"magnitude.{name}": _magnitude_setting(name) for name in ("enabled", "method", "schedule", "sparsity")},
}
