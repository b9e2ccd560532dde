"""The ``netbonsai`` command.

Exit codes: 0 done; 2 bad usage or bad input (one line on stderr, no traceback); 1 an internal
error (one line; set NETBONSAI_DEBUG=1 for the traceback); 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .atomic import check_output_file
from .errors import InputError

from .cli_options import (TENSORBOARD_HELP, THREADS_HELP, _event_logging, _parse_overrides, _run_options,
                          _search_limits)
from .cli_progress import _CliReporter, _reporter  # noqa: F401 - _CliReporter: the reporter tests drive


def _set_threads(threads: int) -> None:
    """Every command's process setup: torch threads (:func:`netbonsai.runtime.set_threads`, so that
    the library's own thread policy follows ``--threads``) and an allocator that keeps freed memory."""
    from .runtime import keep_freed_memory, set_threads

    keep_freed_memory()
    set_threads(threads)


def _execute(kind: str, task, image, preset, seed, overrides, executor, threads, out, resume, quiet,
             tensorboard=None, seeds: int = 1, device: str = "auto", max_params=None, max_seconds=None,
             methods: str | None = None, data_file: str | None = None, target: tuple = (),
             task_type: str | None = None, drop_missing: bool = False, val_fraction: float | None = None,
             test_fraction: float | None = None):
    from .experiments import image_runs

    if max_params is not None and max_params < 1:
        raise InputError(f"--max-params must be a positive number of parameters, got {max_params}")
    if max_seconds is not None and not max_seconds > 0:
        raise InputError(f"--max-seconds must be positive, got {max_seconds}")
    if seed is not None and seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    from .runtime import resolve_device

    resolve_device(device)  # a bad --device is one line before any progress is shown
    _set_threads(threads)
    options = image_runs.RunOptions(
        task=task, image=image, preset=preset, seed=seed, max_params=max_params,
        max_seconds=max_seconds, executor=executor, overrides=_parse_overrides(overrides), seeds=seeds,
        device=device, data=data_file, target=tuple(target), task_type=task_type, drop_missing=drop_missing,
        val_fraction=val_fraction, test_fraction=test_fraction,
    )
    runner = {"grow": image_runs.run_grow, "baseline": image_runs.run_baseline, "compare": image_runs.run_compare_seeds}[kind]
    if kind == "compare" and (methods is not None or options.task_kind() not in ("brightness", "approx")):
        from functools import partial

        from .experiments.compare_methods import run_compare_methods

        default = "grow,magnitude" if options.task_kind() in ("table", "sklearn") else "magnitude,loss-aware"
        runner = partial(_compare_methods, run_compare_methods, methods or default)
    logging = _event_logging(tensorboard)
    reporter = _reporter(quiet)
    reporter.stage_started(f"{kind} {task or data_file}: " + ("loading the data" if kind == "baseline" or resume
                                                 else "loading the data, training the start network"))
    with reporter, logging, reporter.warnings_shown():
        summary = runner(options, out, resume=resume, reporter=reporter)
    click.echo(summary.text)
    click.echo(_listing(summary.out))


def _compare_methods(run, methods: str, options, out, resume, reporter):
    """compare with --methods (and on tasks the grow search does not run): the method platform."""
    options.settings()  # validates, and splits the --set keys of the named methods
    return run(options, methods, out, resume=resume, reporter=reporter, method_overrides=options.method_overrides)


def _prune_data(dataset: str, data_dir: str | None) -> str | None:
    """prune's data folder: ``mnist`` with --data DIR (or $NETBONSAI_DATA), or ``idx:DIR``."""
    if dataset == "mnist":
        return data_dir
    from .data.specs import parse_task_spec

    spec = parse_task_spec(dataset)
    if spec.kind != "idx":
        raise InputError(f"prune works on MNIST-style data: name it mnist (with --data DIR) or idx:DIR, not {dataset}")
    if data_dir is not None:
        raise InputError(f"give the data folder once: either {dataset} or --data {data_dir}")
    return spec.argument


def _listing(folder: Path) -> str:
    """The last output line of a run command: the run directory and what it holds (folders end in '/')."""
    folder = Path(folder)
    entries = folder.iterdir() if folder.is_dir() else ()
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in entries if not p.name.startswith("."))
    return f"Run directory: {folder}" + (f" ({', '.join(names)})" if names else "")


def _downloaded(data_dir: str | None, download: bool) -> str | None:
    """``--data`` as given, or with ``--download`` the cached MNIST folder (fetched if missing)."""
    if not download:
        return data_dir
    if data_dir is not None:
        raise InputError("give either --data DIR or --download, not both")
    from .data.idx import download_mnist

    return str(download_mnist("mnist"))


# ---------------------------------------------------------------------- commands
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netbonsai")
def cli() -> None:
    """Grow and prune neural networks into the smallest architecture that meets an error target.

    \b
    Exit codes:
      0    done
      1    internal error (one line; set NETBONSAI_DEBUG=1 for the traceback)
      2    bad usage or bad input (one line on stderr)
      130  interrupted (Ctrl-C); a command with --resume continues from its last
           checkpoint when rerun the same way with --resume
    """


@cli.command()
@_run_options
@_search_limits
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent comparisons (seeds --seed, --seed + 1, ...; same data split) in DIR/seed-S, "
                   "pooled: a single seed measures the ratio to about +-0.2.")
@click.option("--methods", type=str, default=None, metavar="A,B,...",
              help="Registered methods to compare against the dense sweep (see `netbonsai methods`), e.g. "
                   "grow,magnitude,loss-aware. Default on brightness/approx: the grow-and-prune search with the "
                   "magnitude-pruning baseline (the classic comparison); on idx:DIR: magnitude,loss-aware; on tables (--data, sklearn:NAME): grow,magnitude.")
def compare(seeds: int, methods: str | None, **kwargs) -> None:
    """Methods against a dense MLP sweep (same split, trainer and budget): the parameter ratio.

    TASK is brightness[:IMAGE], approx[:IMAGE] (IMAGE: a file or skimage:NAME; default the camera
    image), idx:DIR (a folder of MNIST-format IDX files) or sklearn:NAME (diabetes, digits,
    breast_cancer, wine, iris); or give a table of your own with --data FILE --target COL. Method settings: --set NAME.KEY=VALUE
    (e.g. --set grow.placement=cascade, --set loss-aware.eps=0.01).
    """
    _execute("compare", seeds=seeds, methods=methods, **kwargs)


@cli.command(name="methods")
def methods_command() -> None:
    """List the registered methods that compare --methods takes."""
    from .analysis.report import markdown_table
    from .methods import METHODS, method_names

    names = method_names()
    click.echo(markdown_table(["method", "tasks", "what it does"],
                              [[n, "/".join(METHODS[n].tasks), METHODS[n].summary] for n in names]))


@cli.command(name="grow")
@_run_options
@_search_limits
def grow_command(**kwargs) -> None:
    """Run the grow-and-prune search of paper 000 on a task (TASK: brightness[:IMAGE], approx[:IMAGE],
    sklearn:NAME, idx:DIR) or on a table of your own (--data FILE --target COL)."""
    _execute("grow", **kwargs)


@cli.command()
@_run_options
def baseline(**kwargs) -> None:
    """Train the dense MLP grid (the paper's Keras networks) with the run's trainer and budget.

    It runs no search: --set takes dense.grid, dense.epochs, polish.epochs, trainer.*, activation,
    seed and start_epochs, and refuses the search's other settings. The run's model is the dense
    network with the lowest validation loss.
    """
    _execute("baseline", **kwargs)


@cli.command()
@click.argument("dataset", type=str, metavar="mnist|idx:DIR")
@click.option("--data", "data_dir", type=str, default=None,
              help="Folder of MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST); default $NETBONSAI_DATA.")
@click.option("--download", is_flag=True,
              help="Fetch MNIST into the cache ($NETBONSAI_CACHE or ~/.cache/netbonsai) and use it (needs internet).")
@click.option("--arch", type=str, default="784-300-100-10", show_default=True, help="Layer widths joined by '-'.")
@click.option("--activation", type=click.Choice(["relu", "tanh", "sigmoid"]), default="relu", show_default=True)
@click.option("--method", type=str, default="magnitude-blinded", show_default=True,
              help="random, magnitude-blinded, magnitude-uniform, magnitude-distributed, obd or loss-aware.")
@click.option("--schedule", type=str, default="relative:0.2", show_default=True,
              help="oneshot:FRACTION, fixed:COUNT, relative:FRACTION or bucket:SALIENCY.")
@click.option("--target-sparsity", type=float, default=0.9, show_default=True, help="Stop at this fraction of weights removed.")
@click.option("--max-accuracy-drop", type=float, default=None,
              help="Stop (and roll back one round) when validation accuracy falls this much below the dense net's.")
@click.option("--dense-epochs", type=int, default=10, show_default=True, help="Adam epochs of the dense network.")
@click.option("--retrain-epochs", type=int, default=1, show_default=True, help="Adam epochs after every round (0: none).")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="Adam's L2 penalty (Han et al. use L2).")
@click.option("--max-rounds", type=int, default=200, show_default=True)
@click.option("--eps", type=float, default=0.015, show_default=True,
              help="loss-aware: a step is kept while the held-out loss stays within (1 + eps) of the start.")
@click.option("--max-seconds", type=float, default=None, help="loss-aware: stop starting removal steps after this long.")
@click.option("--val-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Training images held out for decisions (the accuracy-drop tolerance).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help=THREADS_HELP)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), default=None, help=TENSORBOARD_HELP)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def prune(dataset: str, data_dir, download, arch, activation, method, schedule, target_sparsity, max_accuracy_drop, dense_epochs,
          retrain_epochs, lr, batch_size, weight_decay, max_rounds, eps, max_seconds, val_size, seed, threads, out, resume,
          tensorboard, quiet) -> None:
    """Train a dense MLP on MNIST-style data and prune it on a schedule (paper 001's methods).

    The data: `mnist` with --data DIR (or $NETBONSAI_DATA, or --download), or `idx:DIR`.
    """
    from .experiments.mnist_pruning import PruneOptions, run_prune_mnist

    data_dir = _downloaded(_prune_data(dataset, data_dir), download)
    options = PruneOptions(
        data=data_dir, arch=arch, activation=activation, method=method, schedule=schedule,
        target_sparsity=target_sparsity, max_accuracy_drop=max_accuracy_drop, dense_epochs=dense_epochs,
        retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, max_rounds=max_rounds, eps=eps, max_seconds=max_seconds, val_size=val_size, seed=seed,
    )
    options.validate()
    _set_threads(threads)

    reporter = _reporter(quiet)
    # the dense network trains before the first round is reported (on resume only if unfinished)
    dense_stage = (f"loading the data, training the dense network ({dense_epochs} epochs)" if not resume
                   else "resuming: loading the data (and training the dense network if unfinished)")
    reporter.stage_started(dense_stage, total=1)
    unfinished = [dense_stage]

    def on_round(record: dict[str, Any]) -> None:
        if unfinished:  # the first round: the dense network is trained
            reporter.stage_advanced(unfinished.pop(), 1)
        reporter.message(f"round {record['round']:>3}: sparsity {record['sparsity']:.4f}, {record['params']} params, "
                         f"test accuracy {record['test_accuracy']:.4f} ({record['test_errors']} errors), "
                         f"{record['seconds']:.1f} s")

    with reporter, _event_logging(tensorboard), reporter.warnings_shown():
        summary = run_prune_mnist(options, out, resume=resume, on_round=on_round)
    click.echo(f"{summary['method']} {summary['schedule']}: sparsity {summary['sparsity']:.4f}, "
               f"{summary['params']} live parameters ({summary['model_params']} in the saved model), "
               f"test errors {summary['dense_test_errors']} dense -> {summary['test_errors']} ({summary['stopped']})")
    click.echo(_listing(out))


@cli.command()
@click.argument("experiment", required=False)
@click.option("--preset", type=click.Choice(["quick", "paper"]), default="quick", show_default=True)
@click.option("--data", "data_dir", type=str, default=None, help="Dataset folder (MNIST experiments); default $NETBONSAI_DATA.")
@click.option("--download", is_flag=True, help="Fetch MNIST into the cache and use it (needs internet).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help=THREADS_HELP)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--executor", type=click.Choice(["inline", "process", "ray"]), default=None,
              help="Where independent trainings run (default: the experiment's own choice; ray needs netbonsai[ray]).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel workers of the executor (default 2).")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Trainings per structure from different initial weights; its accuracy is their mean "
                   "(reber-structure-prediction; default 1, as in the paper; give it again with --resume).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change one of the preset's settings (genetic-nas; repeatable), e.g. estimation_mode=replace.")
@click.option("--tensorboard", type=click.Path(file_okay=False, path_type=Path), default=None, help=TENSORBOARD_HELP)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def reproduce(experiment: str | None, preset, data_dir, download, seed, threads, out, resume, executor, workers,
              repeats, overrides, tensorboard, quiet) -> None:
    """Reproduce a paper's table or figure (lists the experiments when EXPERIMENT is omitted)."""
    from .experiments.registry import EXPERIMENTS, get_experiment
    from .experiments.show import result_tables

    if experiment is None:
        from .analysis.report import markdown_table

        click.echo(markdown_table(["experiment", "paper", "what it reproduces"],
                                  [[e.name, e.paper, e.summary] for e in EXPERIMENTS.values()]))
        return
    chosen = get_experiment(experiment)
    data_dir = _downloaded(data_dir, download)
    if out is None:
        raise InputError("reproduce needs --out DIR for its run directory")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    _set_threads(threads)

    def progress(text: str) -> None:
        if not quiet:
            click.echo(f"{chosen.name}: {text}", err=True)

    options = {k: v for k, v in (("executor", executor), ("workers", workers)) if v is not None}
    for option, value in (("repeats", repeats), ("set", _parse_overrides(overrides) if overrides else None)):
        if value is not None:
            if option not in chosen.options:
                takers = [e.name for e in EXPERIMENTS.values() if option in e.options]
                raise InputError(f"--{option} applies to {', '.join(takers)} only, not {chosen.name}")
            options["overrides" if option == "set" else option] = value
    with _event_logging(tensorboard):
        result = chosen.runner(out, preset, data_dir, seed, resume, progress, **options)
    headline = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    headline.update(result.get("headline", {}))
    click.echo(json.dumps(headline, indent=2))
    tables = result_tables(result)
    if tables:
        click.echo(tables)
    click.echo(_listing(out))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
def show(run_dir: Path) -> None:
    """Summary table of a run directory (also of a run still in progress)."""
    from .experiments.show import describe_run

    click.echo(describe_run(run_dir))


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG file to write.")
@click.option("--title", type=str, default=None)
def draw(model: Path, output: Path, title: str | None) -> None:
    """Draw a model's network like the paper's figures (inputs, 1/2 layer, layers, live synapses)."""
    from .analysis.draw import draw_network
    from .nets.io import load

    if output.suffix.lower() != ".png":
        raise InputError(f"the drawing is written as PNG; give a .png output path, got {output}")
    if not output.parent.exists():
        raise InputError(f"output folder {output.parent} does not exist")
    net = load(model)
    draw_network(net, output, title=title)
    click.echo(f"wrote {output} ({net.num_params()} parameters, {net.n_hidden} hidden neurons)")


@cli.command(name="export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write an ONNX file (only live weights; needs netbonsai[export]).")
@click.option("--torchscript", "torchscript_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a TorchScript file (loads with torch.jit.load).")
def export_command(model: Path, onnx_path: Path | None, torchscript_path: Path | None) -> None:
    """Export a model file (or a run directory's model) to ONNX and/or TorchScript.

    A table model's export takes the table's columns in their own units (text columns one-hot, in
    the stored order) and returns predictions in the target's units, or a classifier's logits
    (the ONNX file adds their softmax as 'probabilities'); the names are in its metadata."""
    from .nets.export import export_onnx, export_torchscript, table_preprocessing
    from .nets.io import load

    if onnx_path is None and torchscript_path is None:
        raise InputError("export needs at least one of --onnx PATH and --torchscript PATH")
    if onnx_path is not None and onnx_path == torchscript_path:
        raise InputError("--onnx and --torchscript name the same file")
    for path, option in ((onnx_path, "--onnx"), (torchscript_path, "--torchscript")):
        if path is not None:
            check_output_file(path, option)
    if onnx_path is not None:
        from .nets.export import _require_onnx

        _require_onnx()  # before anything is written
    net = load(model)
    results = []
    if onnx_path is not None:
        results.append(export_onnx(net, onnx_path))
    if torchscript_path is not None:
        results.append(export_torchscript(net, torchscript_path))
    for result in results:
        click.echo(f"wrote {result.path} ({result.format}, {result.params} parameters"
                   + (f"; stored as {result.stored_values} values in dense level blocks"
                      if result.stored_values != result.params else "") + ")")
    preprocessing = table_preprocessing(net)
    if preprocessing is not None:  # a table model: exported in the table's own units
        columns = [str(c) for c in preprocessing.get("encoded_columns", [])]
        shown = ", ".join(columns[:8]) + (f", ... ({len(columns)} in all)" if len(columns) > 8 else "")
        click.echo(f"inputs: the table's columns in their own units, text columns one-hot (0/1): {shown}")
        if preprocessing.get("task_type") == "classification":
            classes = ", ".join(str(c) for c in preprocessing.get("classes", []))
            extra = "; the ONNX file adds 'probabilities', their softmax" if onnx_path is not None else ""
            click.echo(f"outputs: one logit per class ({classes}{extra})")
        else:
            targets = ", ".join(str(t) for t in preprocessing.get("targets", []))
            click.echo(f"outputs: predictions in the target's units ({targets})")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--image", type=str, default=None, help="Image file, or skimage:NAME (image models).")
@click.option("--data", "data_file", type=str, default=None,
              help="A CSV/TSV/NPZ of new rows with the model's input columns (table models).")
@click.option("--out", "out_png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the predicted image here (PNG), or with --data the predictions (CSV, required).")
def predict(model: Path, image: str | None, data_file: str | None, out_png: Path | None) -> None:
    """Run a saved model on new data: an image model on a new image (reports its loss), or a
    table model on new rows (--data new.csv --out predictions.csv: one row per input row, a
    prediction column, and proba_<class> columns for classifiers)."""
    from .experiments.predict import check_png_path, predict_image, write_png

    if (image is None) == (data_file is None):
        raise InputError("predict needs either --image PATH (image models) or --data FILE (table models)")
    if data_file is not None:
        from .experiments.predict_table import predict_table

        if out_png is None:
            raise InputError("predict --data needs --out predictions.csv")
        done = predict_table(model, data_file, out_png)
        click.echo(f"wrote {done.path} ({done.rows} rows, {done.task_type}, model {done.params} parameters)")
        return
    if out_png is not None:
        check_png_path(out_png)
    result = predict_image(model, image)
    click.echo(f"{result.task} on {result.image} ({result.image_shape[1]}x{result.image_shape[0]}): "
               f"{result.n_pixels} pixels predicted, loss {result.loss:.6g} [{result.loss_units}], "
               f"model {result.params} parameters")
    if out_png is not None:
        write_png(result.predicted, out_png)
        click.echo(f"wrote {out_png}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the command and maps errors to exit codes."""
    try:
        cli.main(args=argv, prog_name="netbonsai", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(_interrupted(sys.argv[1:] if argv is None else argv), err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"netbonsai: error: {_one_line(exc.format_message())}", err=True)
        return 2
    except InputError as exc:
        click.echo(f"netbonsai: error: {_one_line(str(exc))}", err=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 1, no traceback by default
        if os.environ.get("NETBONSAI_DEBUG"):
            traceback.print_exc()
        click.echo(f"netbonsai: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                   "(set NETBONSAI_DEBUG=1 for the traceback)", err=True)
        return 1
    return 0


def _interrupted(argv: list[str]) -> str:
    """The Ctrl-C line: how to continue, for a command that can resume."""
    name = next((str(a) for a in argv if not str(a).startswith("-")), None)
    command = cli.commands.get(name) if name is not None else None
    if command is not None and any(p.name == "resume" for p in command.params):
        return "netbonsai: interrupted; rerun the same command with --resume to continue from the last checkpoint"
    return "netbonsai: interrupted"


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
