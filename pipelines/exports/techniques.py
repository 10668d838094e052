"""ATT&CK and ATLAS technique ids of a signal or an incident, for the SIEM and indicator exports.

Signals and incidents carry their ids in `techniques: {attack: [...], atlas: [...]}` (branch `detcode`,
issue 13). A document without that field (recorded before it existed) gets its detections' ids from the
rule YAML tags (`attack.t1090.002`, `atlas.aml.t0024.002`), the form the tags had before.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pipelines.infra.paths import SCHEMAS_DIR

TECHNIQUES_FILE = SCHEMAS_DIR / "reference" / "techniques.json"
ATTACK_URL = "https://attack.mitre.org/techniques/{}/"
ATLAS_URL = "https://atlas.mitre.org/techniques/{}"
_ATTACK_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)
_ATLAS_TAG = re.compile(r"^atlas\.(aml\.t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)


@functools.cache
def _detection_tags() -> dict[str, tuple[str, ...]]:
    from pipelines.detect.detections import load_detections  # only for documents recorded without the field

    return {detection.id: tuple(detection.tags) for detection in load_detections()}


def _from_tags(detection_ids: list[str]) -> dict[str, list[str]]:
    attack, atlas = set(), set()
    for detection_id in detection_ids:
        for tag in _detection_tags().get(detection_id, ()):
            if match := _ATTACK_TAG.match(tag):
                attack.add(match.group(1).upper())
            elif match := _ATLAS_TAG.match(tag):
                atlas.add(match.group(1).upper())
    return {"attack": sorted(attack), "atlas": sorted(atlas)}


def techniques_of(document: dict[str, Any]) -> dict[str, list[str]]:
    """{'attack': [...], 'atlas': [...]} for a signal (detection_id) or an incident (detection_ids)."""
    declared = document.get("techniques")
    if isinstance(declared, dict):
        return {framework: sorted(declared.get(framework) or []) for framework in ("attack", "atlas")}
    return _from_tags(document.get("detection_ids") or [document["detection_id"]])


@functools.cache
def _names() -> dict[str, str]:
    """id -> name from the bundled list (absent until it lands: ids without names)."""
    if not TECHNIQUES_FILE.exists():
        return {}
    data = json.loads(TECHNIQUES_FILE.read_text(encoding="utf-8"))
    entries = data.get("techniques", data) if isinstance(data, dict) else data
    if isinstance(entries, dict):
        return {
            key.upper(): value["name"] if isinstance(value, dict) else str(value)
            for key, value in entries.items()
        }
    return {
        entry["id"].upper(): entry["name"] for entry in entries if isinstance(entry, dict) and "id" in entry
    }


def technique_name(technique_id: str) -> str | None:
    return _names().get(technique_id.upper())


def technique_url(framework: str, technique_id: str) -> str:
    if framework == "atlas":
        return ATLAS_URL.format(technique_id.upper())
    # ATT&CK writes a sub-technique T1090.002 as T1090/002 in its URLs
    return ATTACK_URL.format(technique_id.upper().replace(".", "/"))
