"""Realistic OpenRTB bid-request traffic for load tests and benchmarks (never on the bid path).

Templates are real requests: ``openrtb-corpus/*/*.json`` (that glob holds requests only) plus any
request found under the project's ``tests/fixtures`` (a file whose top level has ``imp``, or a
"story" file with a ``request`` object). Each template is rendered to JSON once, with sentinels
where the per-request values go, and split into byte slices; producing a request is then one
``bytes.join`` (a few microseconds), so the generator does not become the load test's bottleneck.

Per request the generator draws:

* an exchange route (``/bid/{exchange}``) from ``TrafficMix.exchanges`` (weights);
* a template from ``TrafficMix.shapes`` (weights over shape tags: ``banner``, ``video``,
  ``native``, ``audio``, ``site``, ``app``, ``dooh``, ``multi-imp``, or a full shape such as
  ``banner-site``); every template matching a tag shares that tag's weight;
* a user: *known* (an id from the ids file written by ``dsp features seed --ids-out FILE``, JSON
  lines with at least ``"id"``) with probability ``known_user_share``, *absent* (no user ids at
  all) with probability ``no_user_share``, otherwise *unknown* (a fresh random id);
* whether to gzip the body (``gzip_share``).

A fresh ``id`` (and ``source.tid`` when the template has ``source``) is minted per request. The user
id goes into every field named by ``TrafficMix.id_fields`` (default ``device.ifa``,
``user.buyeruid``, ``user.id``), creating the ``device``/``user`` objects when missing.

    gen = TrafficGenerator.from_sources(mix=TrafficMix(exchanges={"openx": 1.0}),
                                        ids_file=os.environ.get("DSP_IDS_FILE"))
    sample = gen.next()          # sample.path, sample.body, sample.headers, sample.known_user
"""

from __future__ import annotations

import bisect
import gzip
import json
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

_RID = "@@DSP_RID@@"
_UID = "@@DSP_UID@@"
_SENTINEL_RE = re.compile(rb"@@DSP_(RID|UID)@@")
_MEDIA = ("banner", "video", "native", "audio")
DEFAULT_ID_FIELDS: tuple[str, ...] = ("device.ifa", "user.buyeruid", "user.id")
IDS_FILE_ENV = "DSP_IDS_FILE"


class TrafficMix(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What traffic to send. Weights need not sum to 1; shares are probabilities in [0, 1]."""

    exchanges: dict[str, float]
    shapes: dict[str, float] = msgspec.field(default_factory=dict)  # empty: every template equal
    known_user_share: float = 0.6
    no_user_share: float = 0.0
    gzip_share: float = 0.0
    id_fields: tuple[str, ...] = DEFAULT_ID_FIELDS
    exclude: tuple[str, ...] = ()  # template names (substring match) to leave out
    seed: int | None = None


class BidRequestSample(msgspec.Struct, frozen=True):
    """One request ready to send: POST ``path`` with ``body`` and ``headers``."""

    exchange: str
    path: str
    body: bytes
    headers: dict[str, str]
    request_id: str
    user_id: str | None
    known_user: bool
    template: str
    shape: str
    gzipped: bool


class Template(msgspec.Struct, frozen=True):
    """A request rendered once to JSON bytes, split around the per-request sentinels."""

    name: str
    shape: str
    tags: frozenset[str]
    openrtb_version: str
    parts: tuple[bytes, ...]  # literal, kind, literal, kind, ..., literal (kind: b"RID"|b"UID")
    has_user: bool


def load_known_ids(path: str | os.PathLike[str]) -> list[str]:
    """Ids from a JSON-lines file (``dsp features seed --ids-out``); each line has ``"id"``."""
    ids: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc}") from exc
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
                raise ValueError(f'{path}:{lineno}: expected an object with a string "id"')
            ids.append(row["id"])
    return ids


def exchange_routes(exchanges_dir: str | os.PathLike[str]) -> list[str]:
    """Route names of the exchange profiles in ``bidder_configs/exchanges/*.yaml``.

    Reads ``route`` (or ``name``) from each file; falls back to the file's stem.
    """
    import yaml

    routes: list[str] = []
    for p in sorted(Path(exchanges_dir).glob("*.y*ml")):
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        route = None
        if isinstance(data, dict):
            route = data.get("route") or data.get("name")
        routes.append(str(route) if route else p.stem)
    return routes


def classify(request: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """(shape, tags) of a request: shape is ``<media of imp[0]>-<site|app|dooh>``."""
    imps = request.get("imp") or []
    tags: set[str] = set()
    first_media = "other"
    for i, imp in enumerate(imps if isinstance(imps, list) else []):
        if not isinstance(imp, dict):
            continue
        for m in _MEDIA:
            if imp.get(m) is not None:
                tags.add(m)
                if i == 0 and first_media == "other":
                    first_media = m
    channel = next((c for c in ("app", "dooh", "site") if isinstance(request.get(c), dict)), "none")
    tags.add(channel)
    if isinstance(imps, list) and len(imps) > 1:
        tags.add("multi-imp")
    shape = f"{first_media}-{channel}"
    tags.add(shape)
    return shape, frozenset(tags)


def _set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    cur = obj
    for key in parents:
        nxt = cur.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[key] = nxt
        cur = nxt
    cur[leaf] = value


def _del_path(obj: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    cur: Any = obj
    for key in parents:
        cur = cur.get(key) if isinstance(cur, dict) else None
    if isinstance(cur, dict):
        cur.pop(leaf, None)


def compile_template(name: str, request: dict[str, Any], id_fields: Sequence[str],
                     with_user: bool) -> Template:
    """Render ``request`` once with sentinels for the request id and (optionally) the user id."""
    req = json.loads(json.dumps(request))  # deep copy; corpus values are plain JSON
    req["id"] = _RID
    if isinstance(req.get("source"), dict):
        req["source"]["tid"] = _RID
    for f in id_fields:
        if with_user:
            _set_path(req, f, _UID)
        else:
            _del_path(req, f)
    body = msgspec.json.encode(req)
    pieces = _SENTINEL_RE.split(body)  # literal, kind, literal, ...
    shape, tags = classify(request)
    version = "2.6" if _looks_26(request) else "2.5"
    return Template(name=name, shape=shape, tags=tags, openrtb_version=version,
                    parts=tuple(pieces), has_user=with_user)


def _looks_26(req: Mapping[str, Any]) -> bool:
    regs = req.get("regs")
    user = req.get("user")
    return (isinstance(regs, dict) and ("gdpr" in regs or "us_privacy" in regs or "gpp" in regs)) or (
        isinstance(user, dict) and ("consent" in user or "eids" in user))


def corpus_requests(corpus_dir: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, request) for every ``<corpus>/*/*.json`` that is a bid request with imps."""
    out: list[tuple[str, dict[str, Any]]] = []
    root = Path(corpus_dir)
    for p in sorted(root.glob("*/*.json")):
        data = _read_json(p)
        if isinstance(data, dict) and isinstance(data.get("imp"), list) and data["imp"]:
            out.append((str(p.relative_to(root)), data))
    return out


def fixture_requests(fixtures_dir: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """Requests found in the project's fixtures: bare requests or story files with ``request``.

    Fixtures under a folder whose name contains ``invalid`` or ``bad`` are skipped, and so are
    requests that only a lax-numbers exchange accepts (e.g. ``"w": "320"`` in a Smaato story):
    templates go to every exchange of the mix.
    """
    from dsp.errors import InvalidRequest
    from dsp.openrtb.decode import RequestDecoder

    strict = RequestDecoder()
    out: list[tuple[str, dict[str, Any]]] = []
    root = Path(fixtures_dir)
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*.json")):
        rel = p.relative_to(root)
        if any("invalid" in part or "bad" in part for part in rel.parts[:-1]):
            continue
        data = _read_json(p)
        if isinstance(data, dict) and isinstance(data.get("request"), dict):
            data = data["request"]
        if isinstance(data, dict) and isinstance(data.get("imp"), list) and data["imp"]:
            try:
                strict.decode(json.dumps(data).encode())
            except InvalidRequest:
                continue
            out.append((f"fixtures/{rel}", data))
    return out


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_bytes())
    except (ValueError, OSError):
        return None


def default_corpus_dir() -> Path:
    """``<repo>/../shared/openrtb-corpus`` (the project's layout), overridable by DSP_CORPUS_DIR."""
    env = os.environ.get("DSP_CORPUS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "openrtb-corpus"


def default_fixtures_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "tests" / "fixtures"


class TrafficGenerator:
    """Draws :class:`BidRequestSample` s according to a :class:`TrafficMix`. Not thread-safe."""

    def __init__(self, requests: Iterable[tuple[str, dict[str, Any]]], mix: TrafficMix,
                 known_ids: Sequence[str] = ()) -> None:
        if not mix.exchanges or any(w < 0 for w in mix.exchanges.values()) \
                or sum(mix.exchanges.values()) <= 0:
            raise ValueError("TrafficMix.exchanges: need at least one exchange with weight > 0")
        for share_name in ("known_user_share", "no_user_share", "gzip_share"):
            share = getattr(mix, share_name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"TrafficMix.{share_name} must be in [0, 1], got {share}")
        if mix.known_user_share + mix.no_user_share > 1.0:
            raise ValueError("TrafficMix.known_user_share + no_user_share must be <= 1")
        self.mix = mix
        self._rng = random.Random(mix.seed)
        self._known_ids = [msgspec.json.encode(i)[1:-1] for i in known_ids]
        with_user: list[Template] = []
        without_user: list[Template] = []
        for name, req in requests:
            if any(x in name for x in mix.exclude):
                continue
            with_user.append(compile_template(name, req, mix.id_fields, True))
            without_user.append(compile_template(name, req, mix.id_fields, False))
        if not with_user:
            raise ValueError("no request templates found (corpus or fixtures)")
        weights = _template_weights(with_user, mix.shapes)
        if sum(weights) <= 0:
            raise ValueError(f"TrafficMix.shapes {sorted(mix.shapes)} match no template; "
                             f"known tags: {sorted(set().union(*(t.tags for t in with_user)))}")
        self.templates = with_user
        self._without_user = without_user
        self._cum_weights = _cumulative(weights)
        self._exchanges = list(mix.exchanges)
        self._exchange_cum = _cumulative(list(mix.exchanges.values()))

    @classmethod
    def from_sources(cls, mix: TrafficMix, *, corpus_dir: str | os.PathLike[str] | None = None,
                     fixtures_dir: str | os.PathLike[str] | None = None,
                     ids_file: str | os.PathLike[str] | None = None) -> TrafficGenerator:
        """Templates from the corpus and fixtures; known ids from ``ids_file`` or ``$DSP_IDS_FILE``."""
        corpus = Path(corpus_dir) if corpus_dir is not None else default_corpus_dir()
        fixtures = Path(fixtures_dir) if fixtures_dir is not None else default_fixtures_dir()
        requests = corpus_requests(corpus) + fixture_requests(fixtures)
        ids_path = ids_file if ids_file is not None else os.environ.get(IDS_FILE_ENV)
        known = load_known_ids(ids_path) if ids_path else []
        return cls(requests, mix, known)

    @property
    def known_ids_count(self) -> int:
        return len(self._known_ids)

    def _new_id(self) -> bytes:
        return b"%032x" % self._rng.getrandbits(128)

    def next(self) -> BidRequestSample:
        """One fresh request (new request id; a user drawn per the mix)."""
        rng = self._rng
        exchange = self._exchanges[_pick(self._exchange_cum, rng.random())]
        idx = _pick(self._cum_weights, rng.random())
        roll = rng.random()
        known = bool(self._known_ids) and roll < self.mix.known_user_share
        absent = not known and roll >= 1.0 - self.mix.no_user_share
        tmpl = self._without_user[idx] if absent else self.templates[idx]
        rid = self._new_id()
        uid: bytes | None = None
        if not absent:
            uid = self._known_ids[rng.randrange(len(self._known_ids))] if known else self._new_id()
        parts = list(tmpl.parts)
        for i in range(1, len(parts), 2):
            parts[i] = rid if parts[i] == b"RID" else (uid or b"")
        body = b"".join(parts)
        headers = {"Content-Type": "application/json",
                   "X-Openrtb-Version": tmpl.openrtb_version}
        gz = self.mix.gzip_share > 0 and rng.random() < self.mix.gzip_share
        if gz:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return BidRequestSample(exchange=exchange, path=f"/bid/{exchange}", body=body,
                                headers=headers, request_id=rid.decode(),
                                user_id=uid.decode() if uid is not None else None,
                                known_user=known, template=tmpl.name, shape=tmpl.shape,
                                gzipped=gz)

    def batch(self, n: int) -> list[BidRequestSample]:
        return [self.next() for _ in range(n)]


def _template_weights(templates: Sequence[Template], shapes: Mapping[str, float]) -> list[float]:
    if not shapes:
        return [1.0] * len(templates)
    weights = [0.0] * len(templates)
    for tag, w in shapes.items():
        matching = [i for i, t in enumerate(templates) if tag in t.tags]
        for i in matching:
            weights[i] += w / len(matching)
    return weights


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    acc = 0.0
    out: list[float] = []
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _pick(cum: Sequence[float], u: float) -> int:
    return min(bisect.bisect_right(cum, u), len(cum) - 1)
