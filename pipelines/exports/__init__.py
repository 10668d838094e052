"""Exports for other tools: SIEM documents (OCSF, ECS) and STIX 2.1 indicator bundles."""

from __future__ import annotations

from typing import Any

SIEM_FORMATS = ("ocsf", "ecs")


def siem_document(document: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A signal or incident document in a SIEM format (`ocsf` or `ecs`)."""
    from pipelines.exports import ecs, ocsf

    return {"ocsf": ocsf.finding, "ecs": ecs.document}[fmt](document)
