"""Progress on stderr (a live display on a terminal, a plain line every few seconds when piped,
nothing with --quiet), the Ctrl-C line and exit codes, and --max-params: its help, the warning
below the start network, and the hard cap."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiments.synthetic_idx import write_synthetic_mnist  # tests/ is on sys.path (rootdir conftest)
from netbonsai.cli import _CliReporter, cli, main
from netbonsai.experiments import image_runs, presets, run_options
from netbonsai.experiments.presets import DataSettings, TaskSettings
from netbonsai.grow import GrowConfig, grow
from netbonsai.runs import Reporter, read_history
from tiny_runs import pattern_task


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(quiet: bool = False) -> tuple[_CliReporter, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    return _CliReporter(quiet, stream=stream, clock=clock, grace=0.0, ticker=False), stream, clock


def event(index: int, kind: str = "prune", params: int = 57, val_loss: float = 12.3) -> dict:
    return {"event": kind, "index": index, "params": params, "val_loss": val_loss, "cycle": 1}


# ---------------------------------------------------------------------- the reporter
def test_the_cli_reporter_is_a_runs_reporter_with_the_old_hook_names() -> None:
    reporter, stream, _ = plain()
    assert isinstance(reporter, Reporter)
    assert not reporter.live and reporter.plain  # a StringIO is not a terminal
    reporter.dense_started(14)  # the image runs' older hooks
    reporter.dense_done({"hidden": [5]})
    assert stream.getvalue().splitlines() == ["[   0 s] dense MLP sweep 0/14"]  # the second is within 5 s


def test_piped_progress_prints_at_most_every_interval_and_at_stage_ends() -> None:
    reporter, stream, clock = plain()
    reporter.stage_started("dense MLP sweep", 3)  # a stage start: printed at once
    clock.now += 1
    reporter.stage_advanced("dense MLP sweep")  # 1 s later: held back
    for index in range(5):  # events 0.5 s apart: held back
        clock.now += 0.5
        reporter.event(event(index, params=60 - index))
    assert len(stream.getvalue().splitlines()) == 1
    reporter.tick()  # the ticker before the interval is up: nothing
    assert len(stream.getvalue().splitlines()) == 1
    clock.now += 2.5  # 6 s after the last line: the ticker prints the latest state
    reporter.tick()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "[   6 s] search: prune  params   56  val loss 12.3  neurons added 1"
    reporter.tick()  # nothing new: no repeat (until the keep-alive)
    assert len(stream.getvalue().splitlines()) == 2
    clock.now += 1
    reporter.stage_advanced("dense MLP sweep", 2)  # the stage ends: printed at once
    assert stream.getvalue().splitlines()[-1] == "[   7 s] dense MLP sweep 3/3"
    clock.now += 60
    reporter.tick()  # a minute of nothing new: a keep-alive line
    assert stream.getvalue().splitlines()[-1] == "[  67 s] dense MLP sweep 3/3"
    clock.now += 1
    reporter.event(event(5, "stop") | {"reason": "max_params"})  # the search's end: at once
    assert stream.getvalue().splitlines()[-1].endswith("search: stop   params   57  val loss 12.3  neurons added 1  (max_params)")
    reporter.message("polishing the front networks")  # messages: always, as they are
    assert stream.getvalue().splitlines()[-1] == "polishing the front networks"


def test_close_prints_the_last_unprinted_state() -> None:
    reporter, stream, clock = plain()
    reporter.event(event(0, "start"))
    clock.now += 1
    reporter.event(event(1))
    assert len(stream.getvalue().splitlines()) == 1
    reporter.close()
    assert stream.getvalue().splitlines()[-1].startswith("[   1 s] search: prune")


def test_nothing_in_the_grace_period_and_nothing_pending_after_an_error() -> None:
    stream, clock = io.StringIO(), Clock()
    reporter = _CliReporter(False, stream=stream, clock=clock, grace=1.0, ticker=False)
    reporter.stage_started("training the dense network", 1)  # bad input fails here, in the first second
    reporter.tick()
    assert stream.getvalue() == ""
    clock.now += 1.5
    reporter.tick()  # the grace period is over: the stage start comes out
    assert stream.getvalue() == "[   2 s] training the dense network\n"
    stream.truncate(0), stream.seek(0)
    with pytest.raises(ValueError), _CliReporter(False, stream=stream, clock=clock, ticker=False) as failing:
        failing.stage_started("training the dense network", 1)
        raise ValueError("bad input")
    assert stream.getvalue() == ""  # the error's own line is the only one
    with _CliReporter(False, stream=stream, clock=clock, ticker=False) as quick:
        quick.event(event(0, "stop"))
    assert stream.getvalue() == "[   0 s] search: stop   params   57  val loss 12.3  neurons added 1\n"
    stream.truncate(0), stream.seek(0)
    with _CliReporter(False, stream=stream, clock=clock, ticker=False) as first_message:
        first_message.stage_started("training the dense network", 1)
        first_message.stage_advanced("training the dense network", 1)
        first_message.message("round   0: ...")  # past the input checks: the held-back stage end first
    assert stream.getvalue() == "[   0 s] training the dense network: done\nround   0: ...\n"


def test_events_of_other_kinds_do_not_break_the_line() -> None:
    reporter, stream, clock = plain()
    reporter.event({"event": "round", "round": 3})
    reporter.event({"event": "magnitude", "params": 12.0})
    clock.now += 10
    reporter.tick()
    assert stream.getvalue().splitlines() == ["[   0 s] round:", "[  10 s] magnitude:  params   12"]


def test_quiet_prints_nothing_but_warnings() -> None:
    reporter, stream, clock = plain(quiet=True)
    reporter.stage_started("dense MLP sweep", 2)
    reporter.event(event(0, "start"))
    reporter.message("resuming after event 3")
    clock.now += 100
    reporter.tick()
    reporter.close()
    assert stream.getvalue() == ""
    with reporter.warnings_shown():
        warnings.warn("max_params=5 is below the start network's 45 parameters", UserWarning)
    assert stream.getvalue() == "netbonsai: warning: max_params=5 is below the start network's 45 parameters\n"


def test_a_terminal_gets_the_live_display() -> None:
    stream = io.StringIO()
    reporter = _CliReporter(False, stream=stream, live=True, ticker=False)
    assert reporter.progress is not None and not reporter.plain
    reporter.dense_started(2)
    reporter.event(event(0, "start"))
    reporter.message("a message")
    reporter.close()
    assert "a message" in stream.getvalue() and "dense MLP sweep" in stream.getvalue()


# ---------------------------------------------------------------------- the commands, piped
def write_image(path: Path, size: int = 24) -> Path:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size]
    image = 128 + 60 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + rng.normal(0, 6, (size, size))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
    return path


def tiny_settings(task: str, preset: str = "quick") -> TaskSettings:
    grow_config = GrowConfig(hidden=(3, 3), start_epochs=10, trial_epochs=2, grow_epochs=3, n_attempts=4,
                             attempt_samples=200, max_params=40, max_cycles=1)
    return TaskSettings(task=task, preset=preset, data=DataSettings(max_train=400), grow=grow_config,
                        dense_grid=((2,),), dense_epochs=5, polish_epochs=0)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "task_settings", tiny_settings)
    monkeypatch.setattr(run_options, "task_settings", tiny_settings)


@pytest.mark.fast
def test_grow_piped_prints_progress_lines_and_quiet_does_not(capsys, tmp_path: Path, tiny: None) -> None:
    image = write_image(tmp_path / "img.png")
    args = ["grow", "brightness", "--image", str(image), "--executor", "inline"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert any(line.startswith("[") and "search: " in line for line in lines), err
    assert any("search: stop" in line for line in lines), err  # the end is always printed
    assert "polishing the front networks" in err
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.fast
def test_prune_piped_reports_its_dense_training(capsys, tmp_path: Path) -> None:
    data = write_synthetic_mnist(tmp_path / "mnist", n_train=60, n_test=20, gz=False)
    args = ["prune", "mnist", "--data", str(data), "--arch", "784-8-10", "--val-size", "10", "--dense-epochs", "1",
            "--schedule", "relative:0.5", "--target-sparsity", "0.5"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().err.splitlines()
    # a second of grace: the start line only comes out if the stage is still running then
    done = next(i for i, line in enumerate(lines) if line.endswith("training the dense network (1 epochs): done"))
    assert all(line.endswith("loading the data, training the dense network (1 epochs)") for line in lines[:done])
    assert lines[done].startswith("[")
    assert lines[done + 1].startswith("round   0:")  # the dense network's figures come right after
    assert all(line.startswith("round") for line in lines[done + 1:])
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------- Ctrl-C and exit codes
def test_ctrl_c_says_how_to_continue_where_the_command_can_resume(capsys, monkeypatch, tmp_path: Path) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(image_runs, "run_grow", interrupted)
    code = main(["grow", "brightness", "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 130
    assert capsys.readouterr().err.strip() == (  # after click's newline (the ^C on a terminal)
        "netbonsai: interrupted; rerun the same command with --resume to continue from the last checkpoint")
    monkeypatch.setattr("netbonsai.experiments.show.describe_run", interrupted)
    assert main(["show", str(tmp_path)]) == 130  # show has no --resume
    assert capsys.readouterr().err.strip() == "netbonsai: interrupted"


def test_the_help_documents_exit_codes_and_max_params(capsys) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes:" in text
    for code in ("0 done", "1 internal error", "2 bad usage or bad input", "130 interrupted"):
        assert code in text
    help_text = " ".join(cli.commands["grow"].params[[p.name for p in cli.commands["grow"].params].index("max_params")]
                         .help.split())
    assert help_text == ("Stop once a prune phase ends at or above N parameters; the last addition can overshoot it "
                         "by one neuron's synapses; use --set hard_max_params=true to never keep a network above N.")


# ---------------------------------------------------------------------- --max-params
CONFIG = GrowConfig(hidden=(4, 4), start_epochs=30, trial_epochs=5, grow_epochs=10, n_attempts=10,
                    attempt_samples=500, eps=0.01, max_params=60, max_cycles=4, seed=3)  # start: 45 parameters
# prune phases end at 33, 33, 33, 37 (additions to 47, 46, 46, 50 in between), then at 43: stop at 43 > 40
OVERSHOOT = CONFIG.with_overrides(eps=0.0005, max_params=40, max_cycles=6)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return pattern_task(tmp_path_factory.mktemp("img"))


def test_max_params_below_the_start_network_warns_once(task) -> None:
    config = CONFIG.with_overrides(max_params=5, start_epochs=5, max_prune_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grow(task, config)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert messages[0].startswith("max_params=5 is below the start network's 45 parameters")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grow(task, CONFIG.with_overrides(max_params=45, start_epochs=5, max_prune_steps=2, max_cycles=0))
    assert not [w for w in caught if issubclass(w.category, UserWarning)]  # at the start network: no warning


def test_the_soft_limit_can_overshoot_and_the_hard_cap_never_does(task) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the start network (45) is above 40: pruning gets below it
        soft = grow(task, OVERSHOOT)
        hard = grow(task, OVERSHOOT.with_overrides(hard_max_params=True))
    limit = OVERSHOOT.max_params
    assert soft.stop_reason == "max_params"
    assert soft.net.num_params() > limit  # the last addition overshot the limit (what users saw)
    assert any(p.params > limit for p in soft.front)
    assert hard.stop_reason == "max_params"
    assert hard.net.num_params() <= limit
    assert hard.front and all(p.params <= limit for p in hard.front)
    assert all(e["event"] != "grow" for e in hard.events)  # the first addition would exceed 40: not made
    # until the skipped addition, the hard run took the soft run's path
    first_grow = next(i for i, e in enumerate(soft.events) if e["event"] == "grow")
    assert [(e["event"], e["params"]) for e in hard.events[:first_grow]] == \
        [(e["event"], e["params"]) for e in soft.events[:first_grow]]
    assert hard.events[first_grow]["event"] == "stop" and hard.events[first_grow]["reason"] == "max_params"


def test_a_hard_cap_below_every_network_is_an_error(task) -> None:
    from netbonsai.errors import InputError

    config = CONFIG.with_overrides(max_params=5, hard_max_params=True, start_epochs=5, max_prune_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="hard_max_params: no network"):
            grow(task, config)


@pytest.mark.fast
def test_the_cli_warns_about_max_params_below_the_start_network_even_when_quiet(capsys, tmp_path: Path,
                                                                              tiny: None) -> None:
    image = write_image(tmp_path / "img.png")
    code = main(["grow", "brightness", "--image", str(image), "--executor", "inline", "--quiet",
                 "--max-params", "5", "--out", str(tmp_path / "run")])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["netbonsai: warning: max_params=5 is below the start network's 31 parameters: the search stops "
                   "when its first prune phase ends, above the limit unless pruning gets below it"]
    assert [e["event"] for e in read_history(tmp_path / "run" / "history.jsonl")][-1] == "stop"


def test_a_method_event_names_its_cycle_and_kept_edit() -> None:
    from netbonsai.cli_progress import _event_text

    generation = _event_text({"event": "generation", "generation": 3, "best_params": 247, "best_val_loss": 0.0095144})
    assert generation == "generation 3:  best params  247  best val loss 0.009514"
    line = _event_text({"event": "surgeon-cycle", "params": 261, "cycle": 1, "kept": "add-layer@0"})
    assert line == "surgeon-cycle:  params  261  cycle 1  kept add-layer@0"
