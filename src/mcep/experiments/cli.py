"""``mcep experiments``: the experiment statistics calculator.

The main CLI mounts :data:`app`; this module only parses arguments and renders the report
that :func:`mcep.experiments.analysis.analyze` builds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mcep.experiments.analysis import Comparison, ExperimentReport, analyze
from mcep.experiments.stats import Counts, Interval, Method

app = typer.Typer(
    help="A/B experiment statistics: significance, intervals and always-valid tests.",
    no_args_is_help=True,
)

_COUNTS = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@app.callback()
def _group() -> None:
    """A/B experiment statistics."""
    # A callback keeps `analyze` a named subcommand even while it is the only one.


@app.command("analyze")
def analyze_counts(
    control: Annotated[str, typer.Option(help="Control arm as replies/sent, e.g. 5/83.")],
    variant: Annotated[
        list[str], typer.Option(help="A variant as replies/sent; repeat for more variants.")
    ],
    alpha: Annotated[float, typer.Option(help="Significance level, between 0 and 1.")] = 0.05,
    weights: Annotated[
        str | None,
        typer.Option(help="Planned traffic weights, control first, e.g. 50,25,25 (default equal)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print every statistic for control against each variant."""
    if not 0.0 < alpha < 1.0:
        raise typer.BadParameter(f"{alpha} is not between 0 and 1", param_hint="--alpha")
    arms = [parse_counts(control, option="--control")]
    arms += [parse_counts(text, option="--variant") for text in variant]
    planned = parse_weights(weights, arms=len(arms)) if weights is not None else None
    report = analyze(arms[0], arms[1:], alpha=alpha, weights=planned)
    if as_json:
        typer.echo(json.dumps(report_to_json(report), indent=2))
    else:
        console = Console()
        console.print(report_table(report))
        console.print(_srm_line(report))


def parse_counts(text: str, *, option: str) -> Counts:
    """Parse ``replies/sent``, with a message a person can act on when it is wrong."""
    match = _COUNTS.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not replies/sent, e.g. 5/83", param_hint=option)
    successes, trials = int(match[1]), int(match[2])
    if trials == 0:
        raise typer.BadParameter(f"{text!r}: sent must be at least 1", param_hint=option)
    if successes > trials:
        raise typer.BadParameter(
            f"{text!r}: replies ({successes}) cannot exceed sent ({trials})", param_hint=option
        )
    return Counts(successes, trials)


def parse_weights(text: str, *, arms: int) -> tuple[float, ...]:
    """Parse ``50,25,25``: one positive weight per arm, control first."""
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a list of numbers", param_hint="--weights"
        ) from None
    if len(weights) != arms or not all(math.isfinite(w) and w > 0 for w in weights):
        raise typer.BadParameter(
            f"need {arms} positive weights (control first), got {text!r}", param_hint="--weights"
        )
    return weights


def report_to_json(report: ExperimentReport) -> dict[str, Any]:
    """The report as plain JSON values; infinite or undefined numbers become null."""
    return {
        **_finite(asdict(report)),
        "conventions": (
            "difference and z are variant minus control; "
            "lift and odds ratio are variant over control"
        ),
    }


def report_table(report: ExperimentReport) -> Table:
    """Statistics as rows, arms as columns, so several variants read side by side."""
    confidence = f"{1 - report.alpha:.0%}"
    table = Table(title="Experiment analysis (variant vs control)", title_justify="left")
    table.add_column("Statistic")
    for arm in report.arms:
        table.add_column(arm.label, justify="right")
    rows = [
        ("replies / sent", [f"{a.successes}/{a.trials}" for a in report.arms]),
        ("reply rate", [_pct(a.rate) for a in report.arms]),
        (f"Wilson {confidence} CI", [_interval(a.interval) for a in report.arms]),
    ]
    for label, cells in rows:
        table.add_row(*(Text(cell) for cell in (label, *cells)))
    table.add_section()
    for label, render in _comparison_rows(report):
        cells = ["-", *(render(c) for c in report.comparisons)]
        table.add_row(*(Text(cell) for cell in (label, *cells)))
    return table


def _comparison_rows(report: ExperimentReport) -> list[tuple[str, Callable[[Comparison], str]]]:
    tau = report.comparisons[0].sequential.tau
    return [
        ("difference", lambda c: f"{c.z_test.difference * 100:+.2f} pts"),
        ("relative lift", _lift),
        ("z (pooled), p", lambda c: f"{c.z_test.z:+.4f}, {_p(c.z_test.p_value)}"),
        ("chi-square, p", lambda c: f"{c.chi_square.statistic:.4f}, {_p(c.chi_square.p_value)}"),
        (
            "chi-square Yates, p",
            lambda c: f"{c.chi_square_yates.statistic:.4f}, {_p(c.chi_square_yates.p_value)}",
        ),
        ("Fisher odds ratio, p", lambda c: f"{c.fisher.odds_ratio:.4g}, {_p(c.fisher.p_value)}"),
        ("selected test, p", _selected),
        ("Holm-adjusted p", lambda c: _p(c.holm_p_value)),
        ("chance to beat control", lambda c: _pct(c.chance_to_beat_control)),
        (f"always-valid p (mSPRT, tau={tau:g})", lambda c: _p(c.sequential.p_value)),
        ("always-valid Holm p", lambda c: _p(c.sequential_holm_p_value)),
        ("always-valid CI of difference", lambda c: _interval(c.sequential.interval)),
        (
            f"significant at {report.alpha:g} (always-valid)",
            lambda c: _verdict(c, alpha=report.alpha),
        ),
    ]


def _lift(comparison: Comparison) -> str:
    lift = comparison.lift
    if lift.estimate is None or lift.interval is None:
        return "n/a (control has no replies)"
    return f"{lift.estimate:+.1%} {_interval(lift.interval, signed=True)}"


def _selected(comparison: Comparison) -> str:
    selected = comparison.selected
    if selected.method is Method.FISHER:
        why = f"Fisher (expected cell {selected.min_expected:.1f} < 5)"
    else:
        why = "chi-square"
    return f"{why}, {_p(selected.p_value)}"


def _verdict(comparison: Comparison, *, alpha: float) -> str:
    if comparison.sequential_holm_p_value > alpha:
        return "no"
    return "yes, variant ahead" if comparison.z_test.difference > 0 else "yes, control ahead"


def _srm_line(report: ExperimentReport) -> str:
    srm = report.srm
    weights = ",".join(f"{w:g}" for w in report.weights)
    verdict = "[bold red]MISMATCH[/]: check assignment" if srm.mismatch else "ok"
    return (
        f"Sample ratio vs weights {weights}: chi-square {srm.statistic:.4f}, "
        f"p {_p(srm.p_value)} ({verdict}, alarm at p < 0.001)"
    )


def _pct(value: float) -> str:
    return f"{value:.2%}"


def _p(value: float) -> str:
    return f"{value:.4g}"


def _interval(interval: Interval, *, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"[{interval.low:{sign}.2%}, {interval.high:{sign}.2%}]"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
