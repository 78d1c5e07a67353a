"""sellers.json and ads.txt / app-ads.txt: parsed at config load into set lookups.

    sellers = parse_sellers_json(raw_bytes)          # {"8812": "PUBLISHER", ...}
    ads = parse_ads_txt(text)                        # AdsTxt
    ads.relationship("pubmatic.com", "156209")       # "DIRECT" | "RESELLER" | None

ads.txt (IAB Tech Lab ads.txt 1.1): one record per line, ``<ad system domain>, <publisher
account id>, <DIRECT|RESELLER>[, <certification authority id>]``; ``#`` comments; variable lines
(``contact=``, ``subdomain=``, ``OWNERDOMAIN=``, ``MANAGERDOMAIN=``) are skipped. Domains compare
case-insensitively; account ids are compared as written, trimmed (ids are opaque to us).
app-ads.txt has the same format, published on the app developer's domain.

sellers.json (IAB Tech Lab 1.0): ``{"sellers": [{"seller_id", "seller_type", ...}]}``; a seller is
PUBLISHER, INTERMEDIARY or BOTH. Malformed entries are skipped and counted (a real exchange file
has thousands of rows; one bad row must not drop the others).
"""

from __future__ import annotations

import msgspec

MAX_ADS_TXT_LINES = 100_000


class AdsTxt(msgspec.Struct, frozen=True, gc=False):
    """Authorised sellers of one domain: ``(ad system domain, account id) -> relationship``."""

    records: dict[tuple[str, str], str]
    skipped: int = 0  # lines that were neither records, variables nor comments

    def relationship(self, ad_system: str, account_id: str) -> str | None:
        return self.records.get((ad_system.lower(), account_id.strip()))


def parse_ads_txt(text: str) -> AdsTxt:
    records: dict[tuple[str, str], str] = {}
    skipped = 0
    for n, raw in enumerate(text.splitlines()):
        if n >= MAX_ADS_TXT_LINES:
            break
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or "=" in parts[0]:
            skipped += "=" not in line
            continue
        rel = parts[2].upper()
        if rel not in ("DIRECT", "RESELLER") or not parts[0] or not parts[1]:
            skipped += 1
            continue
        key = (parts[0].lower(), parts[1])
        if records.get(key) != "DIRECT":  # DIRECT wins when a pair is listed both ways
            records[key] = rel
    return AdsTxt(records, skipped)


class _Seller(msgspec.Struct):
    seller_id: str | int | None = None
    seller_type: str | None = None


class _SellersFile(msgspec.Struct):
    sellers: list[_Seller] = []


class SellersJson(msgspec.Struct, frozen=True, gc=False):
    """One exchange's sellers: ``seller_id -> seller_type`` (upper case)."""

    sellers: dict[str, str]
    skipped: int = 0


_SELLERS_DECODER = msgspec.json.Decoder(_SellersFile)


def parse_sellers_json(data: bytes) -> SellersJson:
    """Raises ``msgspec.DecodeError``/``ValidationError`` when the file is not sellers.json."""
    doc = _SELLERS_DECODER.decode(data)
    out: dict[str, str] = {}
    skipped = 0
    for s in doc.sellers:
        kind = (s.seller_type or "").upper()
        if s.seller_id is None or str(s.seller_id) == "" or kind not in (
                "PUBLISHER", "INTERMEDIARY", "BOTH"):
            skipped += 1
            continue
        out[str(s.seller_id).strip()] = kind
    return SellersJson(out, skipped)
