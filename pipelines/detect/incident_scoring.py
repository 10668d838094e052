"""Score incidents against ground-truth labels: what an on-call engineer would have been paged for.

A campaign account is *caught* when an incident of severity >= medium names it; a benign account is a
*false positive* when one names it. A *page* is an incident of severity >= medium. A page is charged to
every campaign whose accounts it names; a page naming benign accounts only is a *benign page* — a page
nobody needed. Time to detect is event time from a campaign's first request to its first page.
"""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.incidents.alerts import SEVERITIES
from pipelines.traffic.generator import LABEL_COLUMNS
from pipelines.traffic.population import BENIGN

PAGE_SEVERITY = "medium"


@dataclass(frozen=True)
class Label:
    account_id: str
    group: str  # campaign instance (e.g. hydra-2) or benign noise class
    scenario_or_benign: str  # campaign kind, or "benign"

    @property
    def is_benign(self) -> bool:
        return self.scenario_or_benign == BENIGN


class CorpusError(ValueError):
    """A labelled corpus that cannot be scored: its labels file is malformed, or its lake holds no events."""


def read_labels(path: Path) -> list[Label]:
    """The ground-truth CSV written by `usagewatch generate --labels`; a clear error on a bad file."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != LABEL_COLUMNS:
            raise CorpusError(f"{path}:1: header must be {','.join(LABEL_COLUMNS)}, got {reader.fieldnames}")
        labels = []
        for line, row in enumerate(reader, start=2):
            if not all(row.get(column) for column in LABEL_COLUMNS):
                raise CorpusError(f"{path}:{line}: every column needs a value, got {row}")
            labels.append(Label(row["account_id"], row["group"], row["scenario_or_benign"]))
    if len({label.account_id for label in labels}) != len(labels):
        raise CorpusError(f"{path}: an account_id appears more than once")
    return labels


@dataclass(frozen=True)
class Page:
    """A page as on-call received it: when (event time of the detect cycle) and whom it named."""

    at: dt.datetime
    account_ids: tuple[str, ...]


@dataclass
class KindScore:
    """One campaign kind (recall) or one benign class (false-positive rate)."""

    kind: str  # "campaign" or "benign"
    name: str
    accounts: int
    named: int
    missed_or_flagged: list[str]
    campaigns: int = 0  # campaign instances of this kind
    pages: int = 0  # pages charged to those instances (a page naming two instances counts for both)
    time_to_detect_minutes: list[float] = field(default_factory=list)  # one per caught instance

    @property
    def rate(self) -> float:
        return self.named / self.accounts if self.accounts else 0.0

    @property
    def pages_per_campaign(self) -> float:
        return self.pages / self.campaigns if self.campaigns else 0.0


@dataclass
class Scorecard:
    kinds: list[KindScore]
    pages: int
    benign_pages: int
    benign_accounts: int
    days: float

    @property
    def benign_pages_per_thousand_per_day(self) -> float:
        if not self.benign_accounts or not self.days:
            return 0.0
        return self.benign_pages / (self.benign_accounts / 1000) / self.days

    @property
    def benign_named_rate(self) -> float:
        benign = [score for score in self.kinds if score.kind == "benign"]
        return sum(s.named for s in benign) / self.benign_accounts if self.benign_accounts else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "benign_pages": self.benign_pages,
            "benign_accounts": self.benign_accounts,
            "days": round(self.days, 4),
            "benign_pages_per_thousand_per_day": round(self.benign_pages_per_thousand_per_day, 3),
            "benign_named_rate": round(self.benign_named_rate, 4),
            "kinds": [
                {
                    "kind": score.kind,
                    "name": score.name,
                    "accounts": score.accounts,
                    "named": score.named,
                    "rate": round(score.rate, 4),
                    "campaigns": score.campaigns,
                    "pages": score.pages,
                    "pages_per_campaign": round(score.pages_per_campaign, 3),
                    "time_to_detect_minutes": {
                        "median": _rounded(statistics.median(score.time_to_detect_minutes)),
                        "worst": _rounded(max(score.time_to_detect_minutes)),
                    }
                    if score.time_to_detect_minutes
                    else None,
                    "missed_or_flagged": score.missed_or_flagged,
                }
                for score in self.kinds
            ],
        }


def _rounded(value: float) -> float:
    return round(value, 1)


def is_page(incident: dict[str, Any]) -> bool:
    return SEVERITIES.index(incident["severity"]) >= SEVERITIES.index(PAGE_SEVERITY)


def score_incidents(
    labels: Iterable[Label],
    incidents: Iterable[dict[str, Any]],
    days: float,
    first_request: dict[str, dt.datetime] | None = None,
    pages_over_time: Iterable[Page] = (),
) -> Scorecard:
    """Recall per campaign kind, false-positive rate per benign class, pages, time to detect.

    `incidents` are the final incidents. `first_request`: campaign instance -> event time of its first
    request; `pages_over_time`: every page an incremental replay sent (opened or escalated), with the
    event time of its cycle. Without both no time to detect is reported.
    """
    labels = list(labels)
    by_account = {label.account_id: label for label in labels}
    pages = [incident for incident in incidents if is_page(incident)]
    named = {account for incident in pages for account in incident["account_ids"]}

    def campaigns_named(account_ids: Iterable[str]) -> set[str]:
        return {
            by_account[account].group
            for account in account_ids
            if account in by_account and not by_account[account].is_benign
        }

    pages_by_campaign: dict[str, int] = defaultdict(int)
    benign_pages = 0
    for incident in pages:
        campaigns = campaigns_named(incident["account_ids"])
        if not campaigns:
            # A data-quality incident names no account: not a page about traffic, not a benign page.
            benign_pages += bool(incident["account_ids"])
        for campaign in campaigns:
            pages_by_campaign[campaign] += 1
    first_page_by_campaign: dict[str, dt.datetime] = {}
    for page in pages_over_time:
        for campaign in campaigns_named(page.account_ids):
            if campaign not in first_page_by_campaign or page.at < first_page_by_campaign[campaign]:
                first_page_by_campaign[campaign] = page.at

    members: dict[tuple[str, str], list[Label]] = defaultdict(list)
    for label in labels:
        key = ("benign", label.group) if label.is_benign else ("campaign", label.scenario_or_benign)
        members[key].append(label)
    kinds = []
    for (kind, name), group in sorted(members.items()):
        accounts = [label.account_id for label in group]
        hits = [account for account in accounts if account in named]
        notable = sorted(set(accounts) - set(hits)) if kind == "campaign" else sorted(hits)
        score = KindScore(kind, name, len(accounts), len(hits), notable)
        if kind == "campaign":
            instances = sorted({label.group for label in group})
            score.campaigns = len(instances)
            score.pages = sum(pages_by_campaign[instance] for instance in instances)
            for instance in instances:
                start = (first_request or {}).get(instance)
                paged = first_page_by_campaign.get(instance)
                if start is not None and paged is not None:
                    score.time_to_detect_minutes.append(max(0.0, (paged - start).total_seconds() / 60))
        kinds.append(score)
    benign_accounts = sum(1 for label in labels if label.is_benign)
    return Scorecard(kinds, len(pages), benign_pages, benign_accounts, days)
