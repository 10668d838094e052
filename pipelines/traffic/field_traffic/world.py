"""The world the field profile's accounts live in: places, networks and how GeoIP sees them.

GeoIP databases do not know where a person is; they know where an address block was registered or last
measured. So a home line often lands on the ISP's regional hub hundreds of km away, a phone on the
carrier's gateway city, some blocks only on their country (the country's default point, accuracy
~1,000 km), a few in the neighbouring country, and some nowhere at all. `World.locate` applies those
errors once per address, as an enrichment database would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pipelines.traffic.population import PLACES, Builder, Network

# Places beyond the classic generator's table: (country, latitude, longitude, UTC offset in hours).
EXTRA_PLACES = {
    "Los Angeles": ("US", 34.0522, -118.2437, -8),
    "Dallas": ("US", 32.7767, -96.7970, -6),
    "Atlanta": ("US", 33.7490, -84.3880, -5),
    "Denver": ("US", 39.7392, -104.9903, -7),
    "Miami": ("US", 25.7617, -80.1918, -5),
    "Detroit": ("US", 42.3314, -83.0458, -5),
    "San Diego": ("US", 32.7157, -117.1611, -8),
    "Boardman": ("US", 45.8399, -119.7006, -8),
    "Council Bluffs": ("US", 41.2619, -95.8608, -6),
    "Birmingham": ("GB", 52.4862, -1.8904, 0),
    "Frankfurt": ("DE", 50.1109, 8.6821, 1),
    "Cologne": ("DE", 50.9375, 6.9603, 1),
    "Loerrach": ("DE", 47.6145, 7.6647, 1),
    "Falkenstein": ("DE", 50.4779, 12.3713, 1),
    "Marseille": ("FR", 43.2965, 5.3698, 1),
    "Lille": ("FR", 50.6292, 3.0573, 1),
    "Annemasse": ("FR", 46.1934, 6.2342, 1),
    "Mulhouse": ("FR", 47.7508, 7.3359, 1),
    "Metz": ("FR", 49.1193, 6.1757, 1),
    "Roubaix": ("FR", 50.6942, 3.1746, 1),
    "Geneva": ("CH", 46.2044, 6.1432, 1),
    "Basel": ("CH", 47.5596, 7.5886, 1),
    "Zurich": ("CH", 47.3769, 8.5417, 1),
    "Luxembourg": ("LU", 49.6116, 6.1319, 1),
    "Brussels": ("BE", 50.8503, 4.3517, 1),
    "Copenhagen": ("DK", 55.6761, 12.5683, 1),
    "Malmo": ("SE", 55.6050, 13.0038, 1),
    "Vienna": ("AT", 48.2082, 16.3738, 1),
    "Bratislava": ("SK", 48.1486, 17.1077, 1),
    "Dublin": ("IE", 53.3498, -6.2603, 0),
    "Milan": ("IT", 45.4642, 9.1900, 1),
    "Rome": ("IT", 41.9028, 12.4964, 1),
    "Warsaw": ("PL", 52.2297, 21.0122, 1),
    "Krakow": ("PL", 50.0647, 19.9450, 1),
    "Windsor": ("CA", 42.3149, -83.0364, -5),
    "Calgary": ("CA", 51.0447, -114.0719, -7),
    "Tijuana": ("MX", 32.5149, -117.0382, -8),
    "Guadalajara": ("MX", 20.6597, -103.3496, -6),
    "Monterrey": ("MX", 25.6866, -100.3161, -6),
    "Chennai": ("IN", 13.0827, 80.2707, 5.5),
    "Hyderabad": ("IN", 17.3850, 78.4867, 5.5),
    "Kolkata": ("IN", 22.5726, 88.3639, 5.5),
    "Brasilia": ("BR", -15.7939, -47.8828, -3),
    "Porto Alegre": ("BR", -30.0346, -51.2177, -3),
    "Fukuoka": ("JP", 33.5904, 130.4017, 9),
    "Sapporo": ("JP", 43.0618, 141.3545, 9),
    "Brisbane": ("AU", -27.4698, 153.0251, 10),
    "Perth": ("AU", -31.9505, 115.8605, 8),
    "Busan": ("KR", 35.1796, 129.0756, 9),
    "Valencia": ("ES", 39.4699, -0.3763, 1),
    "Seville": ("ES", 37.3891, -5.9845, 1),
    "Hong Kong": ("HK", 22.3193, 114.1694, 8),
    "Istanbul": ("TR", 41.0082, 28.9784, 3),
    "Dubai": ("AE", 25.2048, 55.2708, 4),
    "Almaty": ("KZ", 43.2220, 76.8512, 5),
    "Helsinki": ("FI", 60.1699, 24.9384, 2),
    "Beijing": ("CN", 39.9042, 116.4074, 8),
    "Shanghai": ("CN", 31.2304, 121.4737, 8),
    "Shenzhen": ("CN", 22.5431, 114.0579, 8),
    "Moscow": ("RU", 55.7558, 37.6173, 3),
    "Saint Petersburg": ("RU", 59.9311, 30.3609, 3),
    "Minsk": ("BY", 53.9006, 27.5590, 3),
    "Mashhad": ("IR", 36.2605, 59.6168, 3.5),
}
FIELD_PLACES = {**PLACES, **EXTRA_PLACES}
# Data-centre towns: cloud regions live there, people (in this world) do not.
DATACENTER_PLACES = frozenset({"Ashburn", "Boardman", "Council Bluffs", "Falkenstein", "Roubaix"})
RESTRICTED_PLACES = (
    "Tehran",
    "Mashhad",
    "Beijing",
    "Shanghai",
    "Shenzhen",
    "Moscow",
    "Saint Petersburg",
    "Minsk",
)
# Where ordinary customers live, by relative weight (restricted countries are not served).
HOME_COUNTRY_WEIGHTS = {
    "US": 28,
    "IN": 10,
    "GB": 8,
    "DE": 8,
    "FR": 6,
    "BR": 6,
    "JP": 6,
    "CA": 5,
    "AU": 4,
    "NL": 3,
    "KR": 3,
    "ES": 3,
    "MX": 3,
    "IT": 3,
    "PL": 2,
    "SG": 2,
    "SE": 2,
    "CH": 1,
    "IE": 1,
    "TR": 1,
}
# Where GeoIP puts an address it only knows the country of (MaxMind's US point is a farm in Kansas).
COUNTRY_POINTS = {
    "US": (37.751, -97.822),
    "DE": (51.2993, 9.491),
    "GB": (51.4964, -0.1224),
    "FR": (48.8582, 2.3387),
    "IN": (21.0, 78.0),
    "BR": (-22.8305, -43.2192),
    "JP": (35.69, 139.69),
    "CA": (43.6319, -79.3716),
    "NL": (52.3824, 4.8995),
    "CN": (34.7732, 113.722),
    "RU": (55.7386, 37.6068),
    "AU": (-33.494, 143.2104),
}
NEIGHBOURS = {
    "US": ("CA", "MX"),
    "CA": ("US",),
    "MX": ("US",),
    "FR": ("DE", "CH", "BE", "ES", "LU"),
    "DE": ("FR", "NL", "AT", "CH", "PL"),
    "NL": ("DE", "BE"),
    "BE": ("FR", "NL"),
    "CH": ("FR", "DE"),
    "AT": ("DE", "SK"),
    "SK": ("AT",),
    "ES": ("FR",),
    "GB": ("IE",),
    "IE": ("GB",),
    "SE": ("DK", "FI"),
    "DK": ("SE", "DE"),
    "PL": ("DE",),
    "IT": ("CH", "FR"),
    "LU": ("FR", "DE"),
}
# Real ASNs of the big clouds and of networks consumer VPNs and privacy relays rent.
CLOUD_REGIONS = (
    (16509, "Ashburn"),
    (16509, "Boardman"),
    (16509, "Dublin"),
    (16509, "Frankfurt"),
    (16509, "Singapore"),
    (16509, "Tokyo"),
    (8075, "Ashburn"),
    (8075, "Amsterdam"),
    (396982, "Council Bluffs"),
    (14061, "New York"),
    (14061, "Amsterdam"),
    (24940, "Falkenstein"),
    (16276, "Roubaix"),
)
VPN_NETWORKS = (9009, 60068, 212238)  # M247, Datacamp/CDN77, a VPN provider's own AS
VPN_EXIT_PLACES = (
    "London",
    "Amsterdam",
    "Frankfurt",
    "New York",
    "Los Angeles",
    "Singapore",
    "Tokyo",
    "Hong Kong",
    "Stockholm",
    "Zurich",
    "Toronto",
    "Sydney",
    "Paris",
    "Madrid",
)
PRIVACY_RELAY_ASNS = (36183, 13335)  # Akamai and Cloudflare egress of a privacy relay
# The GeoIP database's names of the ASNs above (it has AS names, not numbers): their addresses are drawn
# from those networks where the database has some in the intended country.
GEOIP_AS_NAMES = {
    16509: "AMAZON-02",
    8075: "MICROSOFT-CORP-MSN-AS-BLOCK",
    396982: "GOOGLE-CLOUD-PLATFORM",
    14061: "DIGITALOCEAN-ASN",
    24940: "Hetzner Online GmbH",
    16276: "OVH SAS",
    9009: "M247 Europe SRL",
    60068: "Datacamp Limited",
    13335: "CLOUDFLARENET",
}
MOBILE_USER_AGENTS = (
    "okhttp/4.12.0",
    "Dart/3.5 (dart:io)",
    "CFNetwork/1568.100.1 Darwin/24.0.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15",
)


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lon2 - lon1))
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def km_between(a: str, b: str) -> float:
    """Great-circle distance between two places' centroids."""
    return great_circle_km(*FIELD_PLACES[a][1:3], *FIELD_PLACES[b][1:3])


def cities_of(country: str) -> list[str]:
    return [name for name, (code, *_rest) in FIELD_PLACES.items() if code == country]


@dataclass(frozen=True)
class GeoNoise:
    """How often an enrichment database misplaces an address block."""

    hub_share: float = 0.45  # placed at a regional hub of the same country, not the real city
    country_only_share: float = 0.07
    neighbour_share: float = 0.03  # placed across the border
    unknown_share: float = 0.02  # no geo at all
    accuracy_known_share: float = 0.6  # events carrying geo_accuracy_km
    asn_type_unknown_share: float = 0.03


class World:
    """Addresses and their enrichment, drawn from one random stream."""

    def __init__(self, rng: random.Random, noise: GeoNoise = GeoNoise()):
        self.rng = rng
        self.build = Builder(rng)
        self.noise = noise

    def home_city(self, country: str | None = None) -> str:
        rng = self.rng
        if country is None:
            country = rng.choices(list(HOME_COUNTRY_WEIGHTS), weights=list(HOME_COUNTRY_WEIGHTS.values()))[0]
        cities = [city for city in cities_of(country) if city not in DATACENTER_PLACES]
        return rng.choice(cities)

    def city_at_distance(self, origin: str, target_km: float) -> str:
        """The city of origin's country whose distance from origin is closest to target_km."""
        country = FIELD_PLACES[origin][0]
        candidates = [city for city in cities_of(country) if city not in DATACENTER_PLACES]
        return min(candidates, key=lambda city: (abs(km_between(origin, city) - target_km), city))

    def ipv4(self, place: str, asn: int | None = None) -> str:
        """An address of a fresh /24 that the GeoIP database places in place's country (and in asn's
        networks, when it knows them there): the address really is where the generator means it to be,
        whatever the edge's enrichment later reports for it."""
        block = self.build.block(FIELD_PLACES[place][0], GEOIP_AS_NAMES.get(asn))
        return f"{block}.{self.rng.randrange(2, 255)}"

    def ipv6(self, place: str) -> str:
        """An address of a /48 the GeoIP database places in place's country."""
        return self.build.ipv6(FIELD_PLACES[place][0])

    def placed(
        self, ip: str, place: str | None, asn: int | None, asn_type: str | None, accuracy_km: int | None
    ) -> Network:
        """An address as the database records it at `place` (None: no geo at all)."""
        if place is None:
            return Network(ip, None, None, None, asn, asn_type, None)
        country, latitude, longitude, _ = FIELD_PLACES[place]
        return Network(ip, country, latitude, longitude, asn, asn_type, accuracy_km)

    def locate(
        self,
        ip: str,
        real_place: str,
        asn: int,
        asn_type: str,
        *,
        hub_km: float = 300,
        accuracy_km: tuple[int, int] = (20, 200),
    ) -> Network:
        """Enrich an address that really is at real_place, with the database's usual errors."""
        rng, noise = self.rng, self.noise
        country = FIELD_PLACES[real_place][0]
        if rng.random() < noise.asn_type_unknown_share:
            asn_type = rng.choice(("unknown", None))
        accuracy = rng.randint(*accuracy_km) if rng.random() < noise.accuracy_known_share else None
        draw = rng.random()
        if draw < noise.unknown_share:
            return self.placed(ip, None, asn, asn_type, None)
        draw -= noise.unknown_share
        if draw < noise.country_only_share:
            point = COUNTRY_POINTS.get(country)
            latitude, longitude = point if point else (None, None)
            return Network(ip, country, latitude, longitude, asn, asn_type, 1000 if point else None)
        draw -= noise.country_only_share
        if draw < noise.neighbour_share and NEIGHBOURS.get(country):
            across = [city for code in NEIGHBOURS[country] for city in cities_of(code)]
            nearest = min(across, key=lambda city: km_between(real_place, city))
            return self.placed(ip, nearest, asn, asn_type, accuracy)
        if rng.random() < noise.hub_share:
            hub = self.city_at_distance(real_place, hub_km * rng.uniform(0.5, 1.3))
            return self.placed(ip, hub, asn, asn_type, accuracy)
        return self.placed(ip, real_place, asn, asn_type, accuracy)

    # --- kinds of network ---------------------------------------------------------------------------
    def residential_asn(self, country: str) -> int:
        residential, _ = self.build.isp_asns(country)
        return self.rng.choice(residential)

    def mobile_asn(self, country: str) -> int:
        return self.build.isp_asns(country)[1]

    def home_line(self, place: str, hub_km: float = 300) -> Network:
        country = FIELD_PLACES[place][0]
        ip = self.ipv6(place) if self.rng.random() < 0.2 else self.ipv4(place)
        return self.locate(ip, place, self.residential_asn(country), "residential", hub_km=hub_km)

    def business_line(self, place: str, asn: int | None = None, hub_km: float = 150) -> Network:
        return self.locate(
            self.ipv4(place), place, asn or self.build.asn(), "business", hub_km=hub_km, accuracy_km=(5, 100)
        )

    def mobile_gateways(self, country: str, count: int, gateway_km: float) -> tuple[Network, ...]:
        """A carrier's CGNAT gateways: a few addresses in one block, geolocated at the carrier's hubs."""
        rng = self.rng
        anchor = self.home_city(country)
        hubs = (anchor, self.city_at_distance(anchor, gateway_km))
        block, asn = self.build.block(country), self.mobile_asn(country)
        first = rng.randrange(2, 250 - count)
        return tuple(
            self.placed(
                f"{block}.{first + i}",
                hubs[i % 2],
                asn,
                "mobile",
                rng.randint(500, 1000) if rng.random() < self.noise.accuracy_known_share else None,
            )
            for i in range(count)
        )

    def cloud_ips(self, count: int, region: tuple[int, str] | None = None) -> tuple[Network, ...]:
        """Addresses of one cloud region (exact geo: data centres are well mapped)."""
        rng = self.rng
        asn, place = region or rng.choice(CLOUD_REGIONS)
        return tuple(
            self.placed(
                self.ipv4(place, asn),
                place,
                asn,
                "hosting",
                rng.randint(1, 20) if rng.random() < 0.6 else None,
            )
            for _ in range(count)
        )

    def vpn_exits(self, count: int, places: tuple[str, ...] = VPN_EXIT_PLACES) -> tuple[Network, ...]:
        """A commercial VPN's exits across countries, some typed vpn, some only as hosting."""
        rng = self.rng
        exits = []
        for _ in range(count):
            place = rng.choice(places)
            kind = "vpn" if rng.random() < 0.7 else "hosting"
            accuracy = rng.randint(20, 500) if rng.random() < 0.5 else None
            asn = rng.choice(VPN_NETWORKS)
            exits.append(self.placed(self.ipv4(place, asn), place, asn, kind, accuracy))
        return tuple(exits)

    def residential_proxy_pool(self, size: int, countries: int) -> tuple[Network, ...]:
        """Home lines of strangers rented out by a residential-proxy service, across many countries."""
        rng = self.rng
        chosen = rng.sample(list(HOME_COUNTRY_WEIGHTS), min(countries, len(HOME_COUNTRY_WEIGHTS)))
        return tuple(self.home_line(self.home_city(rng.choice(chosen))) for _ in range(size))
