"""Markdown tables: exact strings for headers and rows."""

from __future__ import annotations

import pytest

from netbonsai.analysis import comparison_table, front_table, markdown_table


def test_markdown_table_aligns_columns():
    table = markdown_table(["name", "n"], [["dense", 61], ["netbonsai", 1234], ["a|b", None]])
    assert table == (
        "| name      |    n |\n"
        "| --------- | ---: |\n"
        "| dense     |   61 |\n"
        "| netbonsai | 1234 |\n"
        "| a\\|b      |      |\n"
    )


def test_markdown_table_rejects_ragged_rows():
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [[1]])


def test_comparison_table_scales_losses():
    ratios = [{"val_loss": 0.002, "grown_params": 80, "dense_params": 89.4, "ratio": 1.1174}]
    lines = comparison_table(ratios, loss_scale=65025).splitlines()
    assert lines[0] == "|   loss | netbonsai params | dense params | ratio |"
    assert lines[1] == "| -----: | ---------------: | -----------: | ----: |"
    assert lines[2] == "| 130.05 |               80 |         89.4 |  1.12 |"
    assert comparison_table(ratios, loss_format="{:.4f}").splitlines()[2].startswith("| 0.0020 |")


def test_front_table_with_and_without_hidden():
    points = [{"params": 61, "train_loss": 0.5, "val_loss": 0.25, "hidden": [5, 5]}]
    lines = front_table(points, loss_scale=2.0).splitlines()
    assert lines[0] == "| hidden | params | train loss | val loss |"
    assert lines[2] == "| 5-5    |     61 |          1 |      0.5 |"
    plain = front_table([{"params": 90, "val_loss": 1.5}]).splitlines()
    assert plain[0] == "| params | train loss | val loss |"
    assert plain[2] == "|     90 |            |      1.5 |"
