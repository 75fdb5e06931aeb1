"""`mcep experiments analyze`, run through Typer's test runner on the sub-app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mcep.experiments.cli import app

runner = CliRunner()


def test_analyze_prints_every_statistic_as_a_table() -> None:
    result = runner.invoke(app, ["analyze", "--control", "5/83", "--variant", "12/99"])
    assert result.exit_code == 0, result.output
    for expected in (
        "5/83",
        "12/99",
        "6.02%",  # control rate
        "+1.4078, 0.1592",  # pooled z and p, variant minus control
        "1.3274, 0.2493",  # chi-square with Yates
        "2.152, 0.2041",  # Fisher odds ratio and p
        "91.35%",  # chance to beat control
        "Sample ratio",
    ):
        assert expected in result.output


def test_analyze_json_is_machine_readable() -> None:
    result = runner.invoke(
        app, ["analyze", "--control", "5/83", "--variant", "12/99", "--variant", "3/90", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    first, second = report["comparisons"]
    assert round(first["z_test"]["z"], 4) == 1.4078
    assert round(first["z_test"]["p_value"], 5) == 0.15918
    assert second["selected"]["method"] == "fisher"  # 3/90 leaves an expected cell under 5
    assert first["holm_p_value"] == pytest.approx(2 * first["selected"]["p_value"])
    assert 0.0 < first["chance_to_beat_control"] < 1.0
    assert first["sequential"]["tau"] == 0.15
    assert [arm["label"] for arm in report["arms"]] == ["control", "variant 1", "variant 2"]
    assert report["srm"]["mismatch"] is False


def test_weights_feed_the_sample_ratio_check() -> None:
    args = ["analyze", "--control", "50/5000", "--variant", "60/5400", "--json"]
    equal = json.loads(runner.invoke(app, args).output)
    assert equal["srm"]["mismatch"] is True
    planned = json.loads(runner.invoke(app, [*args, "--weights", "50,54"]).output)
    assert planned["srm"]["mismatch"] is False


def test_undefined_numbers_become_null_in_json() -> None:
    result = runner.invoke(app, ["analyze", "--control", "0/20", "--variant", "4/20", "--json"])
    comparison = json.loads(result.output)["comparisons"][0]
    assert comparison["lift"] == {"estimate": None, "interval": None}
    assert comparison["fisher"]["odds_ratio"] is None  # infinite with no control replies


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ("5/0", "sent must be at least 1"),
        ("12/10", "cannot exceed sent"),
        ("abc", "is not replies/sent"),
    ],
)
def test_bad_counts_get_a_clear_message_and_exit_code_2(control: str, message: str) -> None:
    result = runner.invoke(app, ["analyze", "--control", control, "--variant", "12/99"])
    assert result.exit_code == 2
    assert message in result.output
    assert "--control" in result.output


@pytest.mark.parametrize(
    "extra", [["--weights", "1,x"], ["--weights", "1,1,1"], ["--alpha", "1.5"]]
)
def test_bad_options_exit_with_code_2(extra: list[str]) -> None:
    result = runner.invoke(app, ["analyze", "--control", "5/83", "--variant", "12/99", *extra])
    assert result.exit_code == 2


def test_a_variant_is_required() -> None:
    assert runner.invoke(app, ["analyze", "--control", "5/83"]).exit_code == 2
