"""Pseudonymisation of access events before they leave the producer: the `privacy` section.

    privacy:
      pseudonymise_api_key_id: true
      pepper_env: USAGEWATCH_PEPPER      # the HMAC key, only ever from the environment
      truncate_ip: {ipv4_prefix: 24, ipv6_prefix: 48}

Applied on the producer path, so neither Kafka, the lake, alerts nor analysts ever hold a raw
api_key_id or a full client address. Detections keep working by construction:

- api_key_id becomes a keyed HMAC-SHA256: the same key always maps to the same pseudonym (joins and
  group-bys are unchanged), while without the pepper nobody can test guesses against it;
- an address keeps its network prefix (host bits zeroed), so the /24 and /48 shared-infrastructure
  detections see the same subnets; per-address evidence coarsens to per-subnet.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from pipelines.infra.config import Config
from pipelines.infra.redaction import register_secret

SECTION = "privacy"
_KEYS = {"pseudonymise_api_key_id", "pepper_env", "truncate_ip"}
_PREFIX_BITS = {"ipv4_prefix": 32, "ipv6_prefix": 128}
# Below this a pepper could be brute-forced offline from a few known key ids and their pseudonyms.
MIN_PEPPER_BYTES = 16
PSEUDONYM_PREFIX = "pk-"


class PrivacyError(ValueError):
    """The pepper's environment variable is missing or too short (the message never holds the value)."""


def pseudonymise(value: str, pepper: bytes) -> str:
    """Keyed, deterministic pseudonym: 128 bits of HMAC-SHA256, marked so nobody mistakes it for a key id."""
    return PSEUDONYM_PREFIX + hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def truncate_ip(value: str, ipv4_prefix: int, ipv6_prefix: int) -> str:
    """The address with its host bits zeroed; a value that is not an address is returned unchanged, so
    the job's parser still dead-letters it with the right reason."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@dataclass(frozen=True)
class Privacy:
    pepper: bytes | None = None  # set: api_key_id is pseudonymised
    ipv4_prefix: int | None = None  # set (with ipv6_prefix): source_ip is truncated
    ipv6_prefix: int | None = None

    @property
    def enabled(self) -> bool:
        return self.pepper is not None or self.ipv4_prefix is not None

    def apply(self, event: dict[str, Any]) -> dict[str, Any]:
        """A copy of the event with the configured fields pseudonymised; other fields untouched."""
        private = dict(event)
        if self.pepper is not None and isinstance(event.get("api_key_id"), str):
            private["api_key_id"] = pseudonymise(event["api_key_id"], self.pepper)
        if self.ipv4_prefix is not None and isinstance(event.get("source_ip"), str):
            private["source_ip"] = truncate_ip(event["source_ip"], self.ipv4_prefix, self.ipv6_prefix)
        return private

    def __repr__(self) -> str:  # never print the pepper
        return f"Privacy(pseudonymise={self.pepper is not None}, ipv4_prefix={self.ipv4_prefix}, " \
            f"ipv6_prefix={self.ipv6_prefix})"  # fmt: skip


def load_privacy(config: Config) -> Privacy:
    """The `privacy` section, validated; raise ConfigError (file:line) or PrivacyError (environment)."""
    # A pepper written into the file gets its own message before the generic unknown-key check.
    if "pepper" in config.section(SECTION):
        raise config.error(
            SECTION, "privacy.pepper: secrets never go in the file; name the variable in pepper_env", "pepper"
        )
    section = config.section(SECTION, _KEYS)
    pseudonymise_keys = section.get("pseudonymise_api_key_id", False)
    if not isinstance(pseudonymise_keys, bool):
        raise config.error(
            SECTION, "privacy.pseudonymise_api_key_id must be true or false", "pseudonymise_api_key_id"
        )
    pepper = None
    if pseudonymise_keys:
        variable = section.get("pepper_env")
        if not isinstance(variable, str) or not variable:
            raise config.error(
                SECTION,
                "privacy.pepper_env must name the environment variable holding the pepper",
                "pepper_env",
            )
        value = os.environ.get(variable, "")
        if len(value.encode("utf-8")) < MIN_PEPPER_BYTES:
            state = "is not set" if not value else f"is shorter than {MIN_PEPPER_BYTES} bytes"
            raise PrivacyError(
                f"{config.path}: privacy: environment variable {variable} (pepper_env) {state}"
            )
        register_secret(value)
        pepper = value.encode("utf-8")
    prefixes: dict[str, int | None] = dict.fromkeys(_PREFIX_BITS)
    truncation = section.get("truncate_ip")
    if truncation is not None:
        if not isinstance(truncation, dict) or set(truncation) != set(_PREFIX_BITS):
            raise config.error(
                SECTION,
                f"privacy.truncate_ip must be a mapping of exactly {sorted(_PREFIX_BITS)}",
                "truncate_ip",
            )
        for key, bits in _PREFIX_BITS.items():
            value = truncation[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bits:
                raise config.error(
                    SECTION,
                    f"privacy.truncate_ip.{key} must be an integer from 0 to {bits}",
                    "truncate_ip",
                    key,
                )
            prefixes[key] = value
    return Privacy(pepper=pepper, **prefixes)
