"""The field traffic profile (`usagewatch generate --profile field`): traffic written from the world.

Where the classic generator's scenarios mirror the detection rules, this profile models how ordinary
customers and real campaigns look at a provider's edge, with the noise enrichment data really has:
people whose home line, office and phone GeoIP places hundreds of km apart, carriers' CGNAT gateways
shared by hundreds of strangers, companies egressing from several cities, campus NAT, commuters across
borders, travellers on real flights, VPN and privacy-relay users, CI on shared cloud runners, research
labs, heavy batch customers, popular public prompt templates, startups on one card, bursts into 429s.
Campaigns (config.CAMPAIGN_KINDS) come in several instances per seed with varied parameters, mix in
ordinary requests and hide behind the same infrastructure as benign customers.

Ground truth: one label row per account that sent an event. Campaign accounts: group = instance id
(e.g. ``residential_proxy_ring-2``), scenario_or_benign = kind; benign accounts: group = class,
scenario_or_benign = ``benign``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from pipelines.traffic.field_traffic.benign import BENIGN_BUILDERS, PUBLIC_TOOLS, Shared
from pipelines.traffic.field_traffic.campaigns import CAMPAIGN_BUILDERS
from pipelines.traffic.field_traffic.cast import MINUTE_MS, Actor, Cast
from pipelines.traffic.field_traffic.config import (
    BENIGN_CLASSES,
    CAMPAIGN_KINDS,
    BenignClass,
    CampaignKind,
    FieldConfig,
)
from pipelines.traffic.generator import DeliveryQueue, _event
from pipelines.traffic.records import Record, records_with_malformed

__all__ = [
    "BENIGN_CLASSES",
    "CAMPAIGN_KINDS",
    "BenignClass",
    "CampaignKind",
    "FieldConfig",
    "field_events",
    "field_labels",
    "field_records",
]

VPN_PROVIDERS = 3


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split total by weight (largest remainder), at least one each for a positive weight."""
    positive = {name: weight for name, weight in weights.items() if weight > 0}
    scale = (total - len(positive)) / sum(positive.values()) if positive else 0
    exact = {name: weight * scale for name, weight in positive.items()}
    counts = {name: 1 + int(share) for name, share in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (exact[name] - int(exact[name]), name), reverse=True)
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return {name: counts.get(name, 0) for name in weights}


def _shared(config: FieldConfig) -> Shared:
    cast = Cast("shared", config)
    vpn = config.benign.get("consumer_vpn", BENIGN_CLASSES["consumer_vpn"])
    return Shared(
        public_templates=tuple((cast.build.fingerprint(), tool) for tool in PUBLIC_TOOLS),
        vpn_providers=[cast.world.vpn_exits(cast.randint(vpn.ips_per_user)) for _ in range(VPN_PROVIDERS)],
    )


def _population(config: FieldConfig) -> list[Actor]:
    """Every account that sends at least one request, campaigns first (hydras register their proxy)."""
    shared = _shared(config)
    actors: list[Actor] = []
    for kind, params in config.campaigns.items():
        for number in range(1, params.instances + 1):
            cast = Cast(f"campaign:{kind}:{number}", config)
            actors += CAMPAIGN_BUILDERS[kind](cast, params, f"{kind}-{number}", shared)
    counts = _apportion(config.benign_accounts, {name: c.weight for name, c in config.benign.items()})
    for name, params in config.benign.items():
        cast = Cast(f"benign:{name}", config)
        actors += BENIGN_BUILDERS[name](cast, params, counts[name], shared)
    for actor in actors:
        actor.times = [t for t in actor.times if config.start_ms <= t < config.end_ms]
    return [actor for actor in actors if actor.times]


def _timed_events(config: FieldConfig) -> Iterator[tuple[int, dict]]:
    actors = _population(config)
    # Each account draws its requests' details from its own stream, so changing one campaign's
    # parameters changes no other account's events.
    streams = [random.Random(f"{config.seed}:events:{actor.account.account_id}") for actor in actors]
    templates = {
        id(persona): frozenset(persona.prompt_fingerprints)
        for actor in actors
        for persona in (actor.account, actor.cover)
        if persona is not None
    }
    schedule = sorted((t_ms, index) for index, actor in enumerate(actors) for t_ms in actor.times)
    queue = DeliveryQueue(config.max_disorder_s)
    minute_counts: dict[int, tuple[int, int]] = {}  # actor -> (minute, requests so far in it)
    for t_ms, index in schedule:
        actor, rng = actors[index], streams[index]
        persona = (
            actor.cover if actor.cover is not None and rng.random() < actor.cover_share else actor.account
        )
        event = _event(persona, t_ms, rng)
        minute, sent = minute_counts.get(index, (-1, 0))
        sent = sent + 1 if minute == t_ms // MINUTE_MS else 1
        minute_counts[index] = (t_ms // MINUTE_MS, sent)
        if sent > actor.rate_limit_per_minute:  # the edge rejects what is over the account's limit
            event.update(status_code=429, input_tokens=0, output_tokens=0, latency_ms=rng.randrange(5, 40))
        fingerprint = event["prompt_fingerprint"]
        adhoc = fingerprint is not None and fingerprint not in templates[id(persona)]
        if adhoc and rng.random() < actor.unfingerprinted_adhoc_share:
            event["prompt_fingerprint"] = None
        queue.push(queue.delivery_ms(t_ms, rng), t_ms, event)
        yield from queue.release(before_ms=t_ms)
    yield from queue.release()


def field_events(config: FieldConfig) -> Iterator[dict]:
    """Valid access events for [start, start + duration), in event-time order up to max_disorder_s."""
    for _, event in _timed_events(config):
        yield event


def field_records(config: FieldConfig) -> Iterator[Record]:
    """Encoded events with config.malformed broken records mixed in (see generator.records_with_malformed)."""
    return records_with_malformed(
        _timed_events(config), config.seed, config.start_ms, config.end_ms, config.malformed
    )


def field_labels(config: FieldConfig) -> list[dict[str, str]]:
    """Ground truth: one row (account_id, group, scenario_or_benign) per account that sends an event."""
    return [actor.account.label for actor in _population(config)]
