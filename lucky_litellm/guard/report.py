"""Drawing a guard's figures: each metric's difference (registry - legacy) and its confidence
interval against the metric's threshold, per stage, as rich tables in a terminal and as a
self-contained HTML page (inline SVG, no script, no network) for `guard status --html`.

Every metric row has its own scale, spanning zero (no difference), the threshold and the
interval (an unbounded end runs off the edge, ◀ or ▶); the interval is drawn as
``━━●━━``, zero as ``│``, the threshold as ``┆``. A metric is shown not worse when its whole
interval is on the good side of the threshold, worse when the whole interval is beyond it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from .control import GuardReport, StageReport

__all__ = ["CHART_WIDTH", "interval_bar", "render_html", "render_terminal"]

CHART_WIDTH = 27

_VERDICT_STYLE = {"worse": "bold red", "not worse": "green"}


def field_of(figure: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in a figure (the core's field names, tolerated spellings)."""
    for name in names:
        if name in figure and figure[name] is not None:
            return figure[name]
    return None


def _figure(figure: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metric": str(field_of(figure, "metric") or "?"),
        "legacy": field_of(figure, "legacy"),
        "registry": field_of(figure, "registry"),
        "difference": field_of(figure, "difference"),
        "low": field_of(figure, "ci_low"),
        "high": field_of(figure, "ci_high"),
        "threshold": field_of(figure, "threshold"),
        "threshold_text": field_of(figure, "threshold_text"),
        "relative": bool(field_of(figure, "relative")),
        "verdict": str(field_of(figure, "verdict") or "-"),
    }


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def value_text(metric: str, value: Any) -> str:
    """A path's own value of a metric, in the metric's unit."""
    number = _finite(value)
    if number is None:
        return "-"
    if metric == "error_rate":
        return f"{number * 100:.2f}%"
    if metric == "p95_latency":
        return f"{number * 1000:.0f} ms" if number < 10 else f"{number:.1f} s"
    if metric == "cost":
        return f"${number:.6f}"
    return f"{number:.4g}"


def difference_text(fig: Mapping[str, Any], value: Any) -> str:
    """A difference (registry - legacy): relative in %, else in the metric's unit, signed."""
    number = _finite(value)
    if number is None:
        return "-"
    metric = fig["metric"]
    if fig["relative"]:
        return f"{number * 100:+.1f}%"
    if metric == "error_rate":
        return f"{number * 100:+.2f}pp"
    if metric == "p95_latency":
        return f"{number * 1000:+.0f} ms"
    if metric == "cost":
        return f"{'-' if number < 0 else '+'}${abs(number):.6f}"
    return f"{number:+.4g}"


def axis(fig: Mapping[str, Any]) -> tuple[float, float]:
    """The range a metric's row shows: zero, the threshold, the estimate and the interval's
    bounded ends, with a margin (an unbounded end runs off the edge)."""
    points = [0.0] + [
        v for v in (_finite(fig[k]) for k in ("low", "high", "threshold", "difference")) if v is not None
    ]
    low, high = min(points), max(points)
    span = high - low or max(abs(high), 1e-9)
    return low - span * 0.08, high + span * 0.08


def interval_bar(fig: Mapping[str, Any], width: int = CHART_WIDTH) -> str:
    """``   ━━━●━━┿━━  ┆   ``: the interval, the estimate, zero and the threshold on one line
    (an unbounded side runs to the edge with an arrow)."""
    low, high, diff = _finite(fig["low"]), _finite(fig["high"]), _finite(fig["difference"])
    threshold = _finite(fig["threshold"])
    left_end, right_end = axis(fig)

    def at(x: float) -> int:
        x = max(left_end, min(right_end, x))
        return round((x - left_end) / (right_end - left_end) * (width - 1))

    empty = low is None and high is None and diff is None
    cells = list("·" * width) if empty else [" "] * width  # dots: no figures yet
    bounded = low is not None or high is not None
    if bounded:
        left = 0 if low is None else at(low)
        right = width - 1 if high is None else at(high)
        for i in range(left, right + 1):
            cells[i] = "━"
        if low is None:
            cells[0] = "◀"
        if high is None:
            cells[-1] = "▶"
    zero = at(0.0)
    cells[zero] = "┿" if cells[zero] == "━" else "│"
    if threshold is not None:
        cells[at(threshold)] = "┆"
    if diff is not None:
        cells[at(diff)] = "●"
    return "".join(cells)


def _interval(fig: Mapping[str, Any]) -> str:
    low, high = _finite(fig["low"]), _finite(fig["high"])
    if low is None and high is None:
        return "-"
    left = "-∞" if low is None else difference_text(fig, low)
    right = "+∞" if high is None else difference_text(fig, high)
    return f"[{left}, {right}]"


def _threshold(fig: Mapping[str, Any]) -> str:
    return str(fig["threshold_text"] or difference_text(fig, fig["threshold"]))


def _stage_title(stage: StageReport) -> str:
    parts = [f"stage {stage.index + 1}: {stage.percent:g} %", stage.state]
    if stage.elapsed_s is not None:
        parts.append(f"{stage.elapsed_s:.0f} s")
    if stage.calls:
        parts.append(f"calls legacy={stage.calls.get('legacy', 0)} registry={stage.calls.get('registry', 0)}")
    if stage.action and stage.state == "current":
        parts.append(f"decision now: {stage.action}")
    return " · ".join(parts)


def render_terminal(report: GuardReport, console: Console) -> None:
    """The guard's state, then one table per stage reached: each metric's values, difference,
    interval, threshold, verdict, and the interval drawn against zero and the threshold."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from ..tables import chrome_width, fit_columns

    state = report.state
    if not state.run_id:
        console.print("no guarded rollout has run on this store")
        console.print(f"store: {report.location}")
        return
    console.print(
        f"guard run {state.run_id}: [bold]{state.status.replace('_', ' ')}[/bold] at stage "
        f"{state.stage_index + 1} of {len(report.stages)} (version {state.version})",
        highlight=False,
    )
    console.print(f"store: {report.location}", highlight=False)
    console.print("chart: ● difference  ━ confidence interval  │ zero  ┆ threshold  (◀ ▶ unbounded)")
    for stage in report.stages:
        if stage.state == "pending":
            continue
        table = Table(title=_stage_title(stage), box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        headers = (
            "METRIC",
            "LEGACY",
            "REGISTRY",
            "DIFF",
            "INTERVAL",
            "THRESHOLD",
            "VERDICT",
            "REGISTRY − LEGACY",
        )
        for column in headers:
            table.add_column(column, overflow="fold")
        figs = [_figure(raw) for raw in stage.figures]
        rows = [
            [
                fig["metric"],
                value_text(fig["metric"], fig["legacy"]),
                value_text(fig["metric"], fig["registry"]),
                difference_text(fig, fig["difference"]),
                _interval(fig),
                _threshold(fig),
                fig["verdict"],
            ]
            for fig in figs
        ]
        # a narrow console folds the values, never a header; the chart narrows to what is left
        floors = [len(header) for header in headers]
        floors[6] = max(floors[6], len("undecided"))
        natural = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(len(headers) - 1)]
        floors[0] = max(floors[0], min(natural[0], 12))  # short metric names stay whole
        left = console.width - chrome_width(table) - sum(floors[:-1])
        chart = max(len(headers[-1]), min(CHART_WIDTH, left))
        floors[-1] = chart
        fit_columns(table, console.width, [*natural, chart], floors)
        for fig, row in zip(figs, rows, strict=True):
            verdict = Text(row[-1], style=_VERDICT_STYLE.get(fig["verdict"], "yellow"))
            table.add_row(*row[:-1], verdict, interval_bar(fig, chart))
        if not stage.figures:
            table.add_row("(no figures yet)", "", "", "", "", "", "", "")
        console.print(table)


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}
td:first-child,th:first-child{text-align:left}.worse{color:#b00;font-weight:bold}.not_worse{color:#070}
.undecided{color:#a60}svg text{font:12px system-ui,sans-serif}
"""


def _svg(figures: Sequence[Mapping[str, Any]]) -> str:
    """One row per metric on its own axis: the interval (bar), the estimate (circle), zero (grey
    line) and the threshold (dashed red line, labelled), the axis' ends labelled below."""
    label_w, plot_w, row_h = 110, 440, 46
    width, height = label_w + plot_w + 70, row_h * max(1, len(figures)) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for row, raw in enumerate(figures):
        fig = _figure(raw)
        left_end, right_end = axis(fig)
        y = 4 + row * row_h + 18

        def x(value: float, left_end: float = left_end, right_end: float = right_end) -> float:
            value = max(left_end, min(right_end, value))
            return label_w + (value - left_end) / (right_end - left_end) * plot_w

        def tick(value: float, anchor: str, fig: Mapping[str, Any] = fig, y: float = y) -> str:
            text = html.escape(difference_text(fig, value))
            return (
                f'<text x="{x(value):.1f}" y="{y + 22:.1f}" text-anchor="{anchor}" fill="#777" '
                f'font-size="10">{text}</text>'
            )

        low, high, diff = _finite(fig["low"]), _finite(fig["high"]), _finite(fig["difference"])
        threshold = _finite(fig["threshold"])
        colour = {"worse": "#c00", "not worse": "#080"}.get(fig["verdict"], "#c80")
        parts.append(f'<text x="0" y="{y + 4:.1f}">{html.escape(fig["metric"])}</text>')
        parts.append(
            f'<line x1="{label_w}" y1="{y:.1f}" x2="{label_w + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        if low is not None or high is not None:
            left, right = x(left_end if low is None else low), x(right_end if high is None else high)
            parts.append(
                f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="{colour}" '
                f'stroke-opacity="0.55" stroke-width="8"><title>interval '
                f"{html.escape(_interval(fig))}</title></line>"
            )
        parts.append(
            f'<line x1="{x(0):.1f}" y1="{y - 12:.1f}" x2="{x(0):.1f}" y2="{y + 12:.1f}" stroke="#555"/>'
        )
        if threshold is not None:
            tx = x(threshold)
            parts.append(
                f'<line x1="{tx:.1f}" y1="{y - 12:.1f}" x2="{tx:.1f}" y2="{y + 12:.1f}" stroke="#c00" '
                f'stroke-width="2" stroke-dasharray="3,2"><title>threshold '
                f"{html.escape(_threshold(fig))}</title></line>"
            )
            parts.append(
                f'<text x="{tx + 3:.1f}" y="{y - 8:.1f}" fill="#c00" font-size="10">'
                f"{html.escape(_threshold(fig))}</text>"
            )
        if diff is not None:
            parts.append(
                f'<circle cx="{x(diff):.1f}" cy="{y:.1f}" r="5" fill="#fff" stroke="{colour}" '
                f'stroke-width="2"><title>difference '
                f"{html.escape(difference_text(fig, diff))}</title></circle>"
            )
        parts.append(tick(left_end, "start"))
        parts.append(tick(right_end, "end"))
        verdict = html.escape(fig["verdict"])
        parts.append(
            f'<text x="{label_w + plot_w + 8}" y="{y + 4:.1f}" fill="{colour}" font-size="11">'
            f"{verdict}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: GuardReport) -> str:
    """The same figures as `render_terminal`, as one self-contained HTML document."""
    state = report.state
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>lucky-litellm guarded rollout</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Guarded rollout</h1>",
    ]
    if not state.run_id:
        out.append("<p>No guarded rollout has run on this store.</p>")
    else:
        out.append(
            f"<p>Run <code>{html.escape(state.run_id)}</code>: <strong>"
            f"{html.escape(state.status.replace('_', ' '))}</strong> at stage {state.stage_index + 1} of "
            f"{len(report.stages)} (version {state.version}). Store: {html.escape(report.location)}. "
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.</p>"
            "<p>Each row: the difference registry − legacy (circle) and its confidence interval (bar); "
            "grey line: zero; dashed red line: the regression threshold.</p>"
        )
    for stage in report.stages:
        if stage.state == "pending":
            continue
        out.append(f'<section class="stage"><h2>{html.escape(_stage_title(stage))}</h2>')
        out.append(
            "<table><tr><th>metric</th><th>legacy</th><th>registry</th><th>difference</th>"
            "<th>interval</th><th>threshold</th><th>verdict</th></tr>"
        )
        for raw in stage.figures:
            fig = _figure(raw)
            cells = [
                fig["metric"],
                value_text(fig["metric"], fig["legacy"]),
                value_text(fig["metric"], fig["registry"]),
                difference_text(fig, fig["difference"]),
                _interval(fig),
                _threshold(fig),
            ]
            verdict = html.escape(fig["verdict"])
            css = verdict.replace(" ", "_")
            out.append(
                "<tr>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
                + f'<td class="{css}">{verdict}</td></tr>'
            )
        out.append("</table>")
        if stage.figures:
            out.append(_svg(stage.figures))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
