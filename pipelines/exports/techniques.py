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


# ATT&CK Enterprise tactics by the short name techniques.json lists them with: (id, name)
ATTACK_TACTICS = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource-development": ("TA0042", "Resource Development"),
    "initial-access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege-escalation": ("TA0004", "Privilege Escalation"),
    "defense-evasion": ("TA0005", "Defense Evasion"),
    "credential-access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral-movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command-and-control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}


@functools.cache
def _reference() -> dict[str, dict[str, Any]]:
    """framework -> {version, techniques: {id: {name, tactics, parent}}} from the bundled list (branch
    detcode); absent, ids go out without names."""
    if not TECHNIQUES_FILE.exists():
        return {}
    data = json.loads(TECHNIQUES_FILE.read_text(encoding="utf-8"))
    return {
        framework: data[framework]
        for framework in ("attack", "atlas")
        if isinstance(data.get(framework), dict)
    }


def _entry(framework: str, technique_id: str) -> dict[str, Any]:
    return _reference().get(framework, {}).get("techniques", {}).get(technique_id.upper(), {})


def technique_name(technique_id: str) -> str | None:
    framework = "atlas" if technique_id.upper().startswith("AML.") else "attack"
    return _entry(framework, technique_id).get("name")


def framework_version(framework: str) -> str | None:
    return _reference().get(framework, {}).get("version")


def attack_tactics(technique_id: str) -> list[tuple[str | None, str]]:
    """(tactic id, name) of an ATT&CK technique (a sub-technique's come from its parent when it has none)."""
    entry = _entry("attack", technique_id)
    names = entry.get("tactics") or _entry("attack", technique_id.split(".")[0]).get("tactics") or []
    return [ATTACK_TACTICS.get(name, (None, name.replace("-", " ").title())) for name in names]


def technique_url(framework: str, technique_id: str) -> str:
    if framework == "atlas":
        return ATLAS_URL.format(technique_id.upper())
    # ATT&CK writes a sub-technique T1090.002 as T1090/002 in its URLs
    return ATTACK_URL.format(technique_id.upper().replace(".", "/"))
