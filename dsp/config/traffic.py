"""Load ``bidder_configs/traffic.yaml`` and the data files it names into :class:`TrafficRules`.

    rules, digest = load_traffic(root, problems)     # problems get one entry per bad file/line

Files are read once per config load (start-up and every reload): bot patterns compile to one
matcher, ranges to sorted integer lists, sellers.json and ads.txt files to dicts. ``digest`` is
a hash of every file read, so a refreshed data file changes the snapshot version.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

import msgspec

from dsp.config.loader import convert_collecting, read_yaml
from dsp.config.schema import TrafficFile
from dsp.errors import ConfigProblem
from dsp.traffic.bots import BotMatcher
from dsp.traffic.iprange import IpRanges, RangeProblem
from dsp.traffic.rules import TrafficRules
from dsp.traffic.supply import AdsTxt, SellersJson, parse_ads_txt, parse_sellers_json

MAX_DATA_FILE_BYTES = 64 << 20  # no single data file may hold more (a refresh gone wrong)


def read_patterns(text: str) -> list[str]:
    """Pattern lines (``#`` comment lines and blanks skipped)."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def compile_bots(patterns: list[str]) -> BotMatcher:
    """Raises ``re.error``; callers say which file. The same patterns compile once per process
    (~0.2 s for the shipped list): reloads and tests reuse the matcher."""
    return _compile_bots(tuple(patterns))


@functools.lru_cache(maxsize=4)
def _compile_bots(patterns: tuple[str, ...]) -> BotMatcher:
    return BotMatcher.from_patterns(patterns)


def _read(path: Path, problems: list[ConfigProblem], h: hashlib._Hash) -> bytes | None:
    try:
        if path.stat().st_size > MAX_DATA_FILE_BYTES:
            problems.append(ConfigProblem(str(path), "", f"larger than {MAX_DATA_FILE_BYTES} bytes"))
            return None
        data = path.read_bytes()
    except OSError as exc:
        problems.append(ConfigProblem(str(path), "", f"cannot read: {exc}"))
        return None
    h.update(path.name.encode() + b"\0" + data)
    return data


def _dir(root: Path, sub: str | None, suffix: str, problems: list[ConfigProblem],
         h: hashlib._Hash) -> dict[str, bytes]:
    if sub is None:
        return {}
    folder = root / sub
    if not folder.is_dir():
        problems.append(ConfigProblem(str(folder), "", "directory is missing"))
        return {}
    out: dict[str, bytes] = {}
    for path in sorted(folder.glob(f"*{suffix}")):
        data = _read(path, problems, h)
        if data is not None:
            out[path.name[: -len(suffix)].lower()] = data
    return out


def load_traffic(root: Path, problems: list[ConfigProblem]) -> tuple[TrafficRules, str]:
    """The rules of ``root/traffic.yaml`` (defaults when absent) and a digest of their files."""
    h = hashlib.sha256()
    path = root / "traffic.yaml"
    if not path.exists():
        return TrafficRules(), ""
    data = read_yaml(path, problems)
    cfg = convert_collecting(data or {}, TrafficFile, str(path), problems)
    if cfg is None:
        return TrafficRules(), ""
    h.update(msgspec.json.encode(cfg))
    patterns = list(cfg.extra_bot_patterns)
    if cfg.bot_user_agents is not None:
        raw = _read(root / cfg.bot_user_agents, problems, h)
        if raw is not None:
            patterns += read_patterns(raw.decode("utf-8", "replace"))
    try:
        bots = compile_bots(patterns)
    except re.error as exc:
        problems.append(ConfigProblem(str(path), "bot_user_agents", f"bad pattern: {exc}"))
        bots = BotMatcher(None, None, (), 0)
    ranges = IpRanges.from_lines(())
    if cfg.datacenter_ranges is not None:
        raw = _read(root / cfg.datacenter_ranges, problems, h)
        if raw is not None:
            try:
                ranges = IpRanges.from_lines(raw.decode("utf-8", "replace").splitlines())
            except RangeProblem as exc:
                problems.append(ConfigProblem(str(root / cfg.datacenter_ranges), "", str(exc)))
    sellers: dict[str, SellersJson] = {}
    for domain, raw in _dir(root, cfg.sellers_dir, ".json", problems, h).items():
        try:
            sellers[domain] = parse_sellers_json(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problems.append(ConfigProblem(f"{root / str(cfg.sellers_dir)}/{domain}.json", "",
                                          f"not a sellers.json file: {exc}"))
    ads = {d: parse_ads_txt(raw.decode("utf-8", "replace"))
           for d, raw in _dir(root, cfg.ads_txt_dir, ".txt", problems, h).items()}
    app_ads: dict[str, AdsTxt] = {d: parse_ads_txt(raw.decode("utf-8", "replace"))
                                  for d, raw in _dir(root, cfg.app_ads_txt_dir, ".txt", problems, h).items()}
    return TrafficRules(
        bots=bots, datacenters=ranges, block_non_public_ip=cfg.block_non_public_ip,
        sellers=sellers, ads_txt=ads, app_ads_txt=app_ads, ads_txt_mode=cfg.ads_txt,
        stacking_threshold_30d=cfg.stacking_threshold_30d,
        stacking_threshold_90d=cfg.stacking_threshold_90d), h.hexdigest()[:12]
