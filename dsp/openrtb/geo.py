"""Country, region and placement codes as exchanges send them -> one canonical form each.

    country_alpha3("us") == "USA";  country_alpha3("USA") == "USA"
    region_code("CA", "USA") == "US-CA";  region_code("us-ca", None) == "US-CA"
    domain_keys("WWW.News.Example.com") == ("news.example.com", "example.com")

OpenRTB says ``geo.country`` is ISO 3166-1 alpha-3 and ``geo.region`` ISO 3166-2; in practice
exchanges send alpha-2 countries, bare subdivision codes (``"CA"`` meaning California when the
country is the US), full codes (``"US-CA"``) and any case. Campaign targeting is compiled to the
canonical forms (alpha-3 countries, ``CC-SUB`` regions, lower-case domains and bundles), so the
bid path does one normalisation per request and set lookups per campaign.

Domains match by suffix on label boundaries: a block entry ``example.com`` blocks
``news.example.com`` but not ``badexample.com``; :func:`domain_keys` yields the domain and each
parent (up to :data:`MAX_LABELS` keys, without the bare TLD) for one set intersection.
"""

from __future__ import annotations

# ISO-3166 alpha-2 -> alpha-3 for traffic that sends the short form (OpenRTB says alpha-3).
ALPHA3 = {
    "US": "USA", "GB": "GBR", "UK": "GBR", "CA": "CAN", "AU": "AUS", "NZ": "NZL", "IE": "IRL",
    "DE": "DEU", "FR": "FRA", "ES": "ESP", "IT": "ITA", "NL": "NLD", "BE": "BEL", "PT": "PRT",
    "AT": "AUT", "CH": "CHE", "SE": "SWE", "NO": "NOR", "DK": "DNK", "FI": "FIN", "PL": "POL",
    "CZ": "CZE", "HU": "HUN", "RO": "ROU", "GR": "GRC", "RU": "RUS", "UA": "UKR", "TR": "TUR",
    "IN": "IND", "CN": "CHN", "HK": "HKG", "JP": "JPN", "KR": "KOR", "TW": "TWN", "SG": "SGP",
    "MY": "MYS", "TH": "THA", "VN": "VNM", "PH": "PHL", "ID": "IDN", "BR": "BRA", "MX": "MEX",
    "AR": "ARG", "CL": "CHL", "CO": "COL", "PE": "PER", "ZA": "ZAF", "NG": "NGA", "KE": "KEN",
    "EG": "EGY", "IL": "ISR", "AE": "ARE", "SA": "SAU", "PR": "PRI", "LU": "LUX", "IS": "ISL",
}
ALPHA2 = {a3: a2 for a2, a3 in ALPHA3.items() if a2 != "UK"}

MAX_LABELS = 6  # a domain deeper than this is matched on its last six labels


def country_alpha3(value: str | None) -> str | None:
    """Normalise a country code to upper-case alpha-3 (alpha-2 mapped when known)."""
    if not value:
        return None
    code = value.strip().upper()
    if len(code) == 2:
        return ALPHA3.get(code, code)
    return code


def region_code(region: str | None, country: str | None) -> str | None:
    """ISO 3166-2 ``CC-SUB`` for a region as sent (``"CA"``, ``"ca"``, ``"US-CA"``, ``"USA-CA"``).

    A bare subdivision needs the country: ``("CA", "USA")`` -> ``"US-CA"``; without a known
    country it stays unresolved (None), which no region allow list matches."""
    if not region:
        return None
    code = region.strip().upper().replace("_", "-")
    if "-" in code:
        prefix, _, sub = code.partition("-")
        if len(prefix) == 3:
            prefix = ALPHA2.get(prefix, prefix)
        return f"{prefix}-{sub}" if prefix and sub else None
    c3 = country_alpha3(country)
    if c3 is None:
        return None
    c2 = ALPHA2.get(c3, c3 if len(c3) == 2 else None)
    return f"{c2}-{code}" if c2 else None


def domain_keys(domain: str | None) -> tuple[str, ...]:
    """The domain (lower case, without ``www.`` and a trailing dot) and its parents."""
    if not domain:
        return ()
    host = domain.lower()
    if "/" in host or ":" in host:  # a page URL sent as the domain
        if "://" in host:
            host = host.split("://", 1)[1]
        host = host.split("/", 1)[0].split(":", 1)[0]
    host = host.strip().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    labels = host.split(".")
    n = len(labels)
    if n == 2:  # the common case: "example.com"
        return (host,)
    if n < 2:
        return (host,) if host else ()
    if n > MAX_LABELS:
        labels = labels[-MAX_LABELS:]
        n = MAX_LABELS
    return tuple([".".join(labels[i:]) for i in range(n - 1)])


def normalise_domain(domain: str) -> str:
    """Config side: one domain entry in the canonical form (``domain_keys(d)[0]``)."""
    keys = domain_keys(domain)
    return keys[0] if keys else ""
