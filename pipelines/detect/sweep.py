"""`usagewatch evaluate --sweep`: where each campaign kind stops being caught, and where noise starts paging.

Each cell is one field-profile corpus (pipelines/traffic/field_traffic) with one parameter pinned: a campaign
cell keeps only that campaign kind beside a smaller benign population (the benign world's own false
positives are measured by the benign cells and by `usagewatch evaluate` on the full profile); a benign
cell keeps no campaign and pins one noise knob over the full benign population. Every cell is built
with the batch lake builder, detected into a scratch state like production, and scored on incidents.
The table goes to stdout, and with --out to sweep.md, sweep.json and sweep.png (a heatmap).
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipelines.detect.evaluation import evaluate
from pipelines.infra.rendering import format_table
from pipelines.traffic.field_traffic import FieldConfig, field_labels, field_records
from pipelines.traffic.generator import write_label_rows
from pipelines.traffic.records import write_jsonl

SWEEP_START = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
CAMPAIGN_CELL_BENIGN_ACCOUNTS = 300


@dataclass(frozen=True)
class Axis:
    """One knob of one campaign kind (or benign class) and the values it is swept over."""

    target: str  # campaign kind or benign class
    parameter: str
    values: tuple[float, ...]
    benign: bool = False

    @property
    def name(self) -> str:
        return f"{self.target}.{self.parameter}"


# Each kind's main parameters, from easy to hard or across the realistic range; the defaults of
# pipelines/traffic/field_traffic/config.py sit inside each range.
AXES = (
    Axis("hydra_proxy_ring", "accounts", (4, 10, 25, 50)),
    Axis("hydra_proxy_ring", "proxy_pool", (1, 3, 8, 20)),
    Axis("residential_proxy_ring", "accounts", (3, 6, 12, 25)),
    Axis("residential_proxy_ring", "proxy_pool", (50, 300, 3000)),
    Axis("split_ring", "group_size", (2, 3, 6)),
    Axis("low_and_slow", "requests_per_hour", (1, 2, 4, 8)),
    Axis("many_template_extractor", "templates", (20, 60, 150, 400)),
    Axis("many_template_extractor", "reasoning_share", (0.05, 0.15, 0.35)),
    Axis("lone_extractor", "requests_per_hour", (30, 90, 240)),
    Axis("lone_extractor", "reasoning_share", (0.05, 0.2, 0.5)),
    Axis("lone_extractor", "output_ratio", (1.5, 3, 8)),
    Axis("sync_ring", "accounts", (3, 8, 20)),
    Axis("rate_limit_riders", "accounts", (3, 6, 12)),
    Axis("restricted_region", "requests_per_hour", (1, 5, 20)),
    Axis("key_sharing", "requests_per_hour", (3, 10, 30)),
    Axis("multi_ip_individual", "geo_spread_km", (100, 450, 1500), benign=True),
    Axis("mobile_cgnat", "nat_population", (30, 90, 300), benign=True),
    Axis("corporate_egress", "geo_spread_km", (100, 500, 2500), benign=True),
)


@dataclass
class Cell:
    axis: Axis
    value: float
    seed: int
    recall: float | None  # campaign cells
    benign_named_rate: float
    benign_pages_per_thousand_per_day: float
    pages_per_campaign: float | None  # campaign cells
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "axis": self.axis.name,
            "value": self.value,
            "seed": self.seed,
            "recall": self.recall,
            "benign_named_rate": round(self.benign_named_rate, 4),
            "benign_pages_per_thousand_per_day": round(self.benign_pages_per_thousand_per_day, 3),
            "pages_per_campaign": self.pages_per_campaign,
            "seconds": round(self.seconds, 1),
        }


def _pinned(value: float, parameter: str) -> Any:
    """Range knobs are pinned as (v, v); scalar knobs take the value itself."""
    ranges = {"accounts", "requests_per_hour", "templates", "reasoning_share", "output_ratio",
              "proxy_pool", "group_size", "ips_per_user"}  # fmt: skip
    return (value, value) if parameter in ranges else type(value)(value)


def cell_config(axis: Axis, value: float, seed: int) -> FieldConfig:
    base = FieldConfig(seed=seed, start=SWEEP_START)
    if axis.benign:
        pinned = {axis.parameter: _pinned(value, axis.parameter)}
        if axis.parameter == "nat_population":
            pinned[axis.parameter] = int(value)
        return base.only().with_benign(axis.target, **pinned)
    small = replace(base, benign_accounts=CAMPAIGN_CELL_BENIGN_ACCOUNTS)
    pinned = {axis.parameter: _pinned(value, axis.parameter)}
    return small.only(axis.target).with_campaign(axis.target, **pinned)


def run_cell(axis: Axis, value: float, seed: int, scratch: Path) -> Cell:
    config = cell_config(axis, value, seed)
    events, labels = scratch / "events.jsonl", scratch / "labels.csv"
    started = time.perf_counter()
    write_jsonl(field_records(config), events)
    write_label_rows(field_labels(config), labels)
    card, _, _, _ = evaluate(events, labels, engine="duckdb")
    kind = next((k for k in card.kinds if k.kind == "campaign" and k.name == axis.target), None)
    return Cell(
        axis,
        value,
        seed,
        recall=None if axis.benign else (kind.rate if kind else 0.0),
        benign_named_rate=card.benign_named_rate,
        benign_pages_per_thousand_per_day=card.benign_pages_per_thousand_per_day,
        pages_per_campaign=None if axis.benign or kind is None else round(kind.pages_per_campaign, 2),
        seconds=time.perf_counter() - started,
    )


def sweep(axes: tuple[Axis, ...], seeds: list[int], log=print) -> list[Cell]:
    cells = []
    for axis in axes:
        for value in axis.values:
            for seed in seeds:
                with tempfile.TemporaryDirectory(prefix="usagewatch-sweep-") as scratch:
                    cell = run_cell(axis, value, seed, Path(scratch))
                cells.append(cell)
                log(f"{axis.name}={value} seed {seed}: {_verdict(cell)} ({cell.seconds:.0f} s)")
    return cells


def _verdict(cell: Cell) -> str:
    benign = (
        f"benign named {cell.benign_named_rate:.1%}, "
        f"{cell.benign_pages_per_thousand_per_day:.2f} pages/1k/day"
    )
    if cell.recall is None:
        return benign
    return f"recall {cell.recall:.0%}, pages/campaign {cell.pages_per_campaign}; {benign}"


def table(cells: list[Cell]) -> str:
    rows = [
        (
            cell.axis.name,
            cell.value,
            cell.seed,
            "" if cell.recall is None else f"{cell.recall:.0%}",
            "" if cell.pages_per_campaign is None else cell.pages_per_campaign,
            f"{cell.benign_named_rate:.2%}",
            f"{cell.benign_pages_per_thousand_per_day:.2f}",
        )
        for cell in cells
    ]
    return format_table(
        ["axis", "value", "seed", "recall", "pages/campaign", "benign named", "benign pages/1k/day"], rows
    )


def heatmap_png(cells: list[Cell]) -> bytes:
    """One row per axis, one column per step of its values; colour = recall (campaigns) or
    1 - benign share named (benign cells), the cell text = the value and the figure."""
    import altair as alt
    import pandas as pd

    from pipelines.reports.report import render_charts

    rows = []
    for cell in cells:
        step = cell.axis.values.index(cell.value) + 1
        score = cell.recall if cell.recall is not None else 1 - cell.benign_named_rate
        figure = f"{cell.recall:.0%}" if cell.recall is not None else f"{cell.benign_named_rate:.1%} FP"
        label = f"{cell.value:g}: {figure}"
        rows.append({"axis": cell.axis.name, "step": step, "score": score, "label": label})
    frame = (
        pd.DataFrame(rows)
        .groupby(["axis", "step"], as_index=False)
        .agg(score=("score", "mean"), label=("label", "first"))
    )
    title = "Sweep: recall per campaign parameter; share of benign accounts not named per noise knob"
    base = alt.Chart(frame, title=title)
    spec = (
        base.mark_rect().encode(
            x=alt.X("step:O", title="parameter step (low -> high)"),
            y=alt.Y("axis:N", title=None, sort=None),
            color=alt.Color(
                "score:Q", scale=alt.Scale(domain=[0, 1], scheme="redyellowgreen"), title="score"
            ),
        )
        + base.mark_text(fontSize=10).encode(x="step:O", y=alt.Y("axis:N", sort=None), text="label:N")
    ).properties(width=420, height=22 * frame["axis"].nunique())
    return render_charts({"sweep": spec.to_dict()})["sweep"]
