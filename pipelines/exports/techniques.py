"""ATT&CK and ATLAS technique ids of a signal or an incident, with their names, tactics and versions from
the bundled list (schemas/reference/techniques.json), for the SIEM exports.

Signals carry their detection's ids in `techniques: {attack: [...], atlas: [...]}` and incidents the union
(schemas/techniques.schema.json); a document recorded before that field existed exports without them.
"""

from __future__ import annotations

from typing import Any

from pipelines.stream.contracts import TECHNIQUE_FRAMEWORKS, known_techniques, technique_versions

ATTACK_URL = "https://attack.mitre.org/techniques/{}/"
ATLAS_URL = "https://atlas.mitre.org/techniques/{}"


def techniques_of(document: dict[str, Any]) -> dict[str, list[str]]:
    """{'attack': [...], 'atlas': [...]} of a signal or an incident."""
    declared = document.get("techniques") or {}
    return {framework: sorted(declared.get(framework) or []) for framework in TECHNIQUE_FRAMEWORKS}


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


def _entry(framework: str, technique_id: str) -> dict[str, Any]:
    return known_techniques()[framework].get(technique_id.upper(), {})


def technique_name(technique_id: str) -> str | None:
    framework = "atlas" if technique_id.upper().startswith("AML.") else "attack"
    return _entry(framework, technique_id).get("name")


def framework_version(framework: str) -> str:
    return technique_versions()[framework]


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
