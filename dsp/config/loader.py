"""Read ``bidder_configs/`` into typed Structs, collecting EVERY problem with its file and path.

    raw, problems = load_dir(Path("bidder_configs"))   # raw is None when any problem was found

msgspec stops at the first error of one ``convert`` call, so each top-level key of a file is
converted on its own: one file with a typo'd key, a negative budget and a missing creative yields
three problems, not one. Cross-file checks (duplicate ids, unknown currencies, exchanges named by a
campaign that have no profile, pacing curves of 24 weights) follow in :mod:`dsp.config.checks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from dsp.config.learned import FunnelFile, Learned, ShadingFile
from dsp.config.schema import CampaignFile, CurrencyFile, PrivacyFile
from dsp.errors import ConfigProblem
from dsp.exchanges.profile import ExchangeProfile

T = TypeVar("T", bound=msgspec.Struct)


class RawConfig(msgspec.Struct, frozen=True):
    """Everything read from one config directory, before compilation. ``files`` maps ids to paths."""

    campaigns: tuple[CampaignFile, ...]
    exchanges: tuple[ExchangeProfile, ...]
    currencies: CurrencyFile
    campaign_files: dict[str, str]
    exchange_files: dict[str, str]
    learned: Learned = Learned.empty()
    privacy: PrivacyFile = PrivacyFile()


def _split_msgspec_error(message: str) -> tuple[str, str]:
    marker = " - at `$"
    idx = message.rfind(marker)
    if idx < 0:
        return message, ""
    return message[:idx], message[idx + len(marker):].rstrip("`")


def convert_collecting(data: Any, kind: type[T], file: str,
                       problems: list[ConfigProblem]) -> T | None:
    """Convert ``data`` to ``kind``; on failure append one problem per bad top-level key."""
    if not isinstance(data, dict):
        problems.append(ConfigProblem(file, "", f"expected a mapping, got {type(data).__name__}"))
        return None
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError:
        pass
    fields = {f.encode_name: f for f in msgspec.structs.fields(kind)}
    found = 0
    for key in data:
        if key not in fields:
            problems.append(ConfigProblem(file, str(key), f"unknown key (expected one of "
                                                          f"{', '.join(sorted(fields))})"))
            found += 1
    for name, field in fields.items():
        if name not in data:
            if field.required:
                problems.append(ConfigProblem(file, name, "required key is missing"))
                found += 1
            continue
        try:
            msgspec.convert(data[name], field.type)
        except msgspec.ValidationError as exc:
            message, sub = _split_msgspec_error(str(exc))
            problems.append(ConfigProblem(file, f"{name}{sub}", message))
            found += 1
    if not found:  # an error the per-key pass could not localise
        try:
            msgspec.convert(data, kind)
        except msgspec.ValidationError as exc:
            message, sub = _split_msgspec_error(str(exc))
            problems.append(ConfigProblem(file, sub.lstrip("."), message))
    return None


def read_yaml(path: Path, problems: list[ConfigProblem]) -> Any:
    """Parse one YAML file; a syntax error becomes a problem (with the line) and None."""
    try:
        with path.open("rb") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problems.append(ConfigProblem(str(path), where, f"YAML syntax error: {exc}"))
    except OSError as exc:
        problems.append(ConfigProblem(str(path), "", f"cannot read: {exc}"))
    return None


def _read_kind(folder: Path, problems: list[ConfigProblem]) -> list[tuple[Any, str]]:
    """(parsed YAML, path) of every file in ``folder``; empty or unparseable files are problems."""
    out: list[tuple[Any, str]] = []
    if not folder.is_dir():
        problems.append(ConfigProblem(str(folder), "", "directory is missing"))
        return out
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        data = read_yaml(path, problems)
        if data is None and not path.read_bytes().strip():
            problems.append(ConfigProblem(str(path), "", "file is empty"))
            continue
        if data is not None:
            out.append((data, str(path)))
    return out


def _convert_all(files: list[tuple[Any, str]], kind: type[T],
                 problems: list[ConfigProblem]) -> list[tuple[T, str]]:
    out: list[tuple[T, str]] = []
    for data, path in files:
        obj = convert_collecting(data, kind, path, problems)
        if obj is not None:
            out.append((obj, path))
    return out


def resolve_aliases(files: list[tuple[Any, str]], problems: list[ConfigProblem]) -> list[tuple[Any, str]]:
    """Merge each ``alias_of`` profile over its parent's file (key by key, the alias wins).

    The parent must be a plain profile in the same folder; a missing parent or an alias of an
    alias is a problem of the alias's file (the alias is then left out)."""
    by_name = {d.get("name"): d for d, _ in files if isinstance(d, dict)}
    out: list[tuple[Any, str]] = []
    for data, path in files:
        parent_name = data.get("alias_of") if isinstance(data, dict) else None
        if parent_name is None:
            out.append((data, path))
            continue
        parent = by_name.get(parent_name)
        if parent is None:
            problems.append(ConfigProblem(path, "alias_of", f"no exchange profile named {parent_name!r}"))
            continue
        if parent.get("alias_of") is not None:
            problems.append(ConfigProblem(path, "alias_of", f"{parent_name!r} is itself an alias; "
                                                            "alias the plain profile instead"))
            continue
        out.append(({**parent, **data}, path))
    return out


def load_dir(root: Path) -> tuple[RawConfig | None, list[ConfigProblem]]:
    """Read every config file under ``root``. Returns (config or None, every problem found)."""
    problems: list[ConfigProblem] = []
    campaigns = _convert_all(_read_kind(root / "campaigns", problems), CampaignFile, problems)
    exchanges = _convert_all(resolve_aliases(_read_kind(root / "exchanges", problems), problems),
                             ExchangeProfile, problems)
    cur_path = root / "currencies.yaml"
    currencies: CurrencyFile | None = CurrencyFile(rates={"USD": 1.0})
    if cur_path.exists():
        data = read_yaml(cur_path, problems)
        currencies = convert_collecting(data or {}, CurrencyFile, str(cur_path), problems)
    privacy: PrivacyFile | None = PrivacyFile()
    privacy_path = root / "privacy.yaml"
    if privacy_path.exists():
        data = read_yaml(privacy_path, problems)
        privacy = convert_collecting(data or {}, PrivacyFile, str(privacy_path), problems)
    campaign_files: dict[str, str] = {}
    for c, path in campaigns:
        if c.id in campaign_files:
            problems.append(ConfigProblem(path, "id", f"campaign id {c.id!r} is also used by "
                                                      f"{campaign_files[c.id]}"))
        campaign_files.setdefault(c.id, path)
    exchange_files: dict[str, str] = {}
    for e, path in exchanges:
        if e.name in exchange_files:
            problems.append(ConfigProblem(path, "name", f"exchange name {e.name!r} is also used by "
                                                        f"{exchange_files[e.name]}"))
        exchange_files.setdefault(e.name, path)
    learned = _load_learned(root / "learned", problems)
    if problems or currencies is None or privacy is None:
        return None, problems
    raw = RawConfig(tuple(c for c, _ in campaigns), tuple(e for e, _ in exchanges), currencies,
                    campaign_files, exchange_files, learned, privacy)
    return raw, problems


def _load_learned(folder: Path, problems: list[ConfigProblem]) -> Learned:
    """``learned/funnel.yaml`` and ``learned/shading.json``, when present (both optional)."""
    funnel: FunnelFile | None = None
    shading: ShadingFile | None = None
    path = folder / "funnel.yaml"
    if path.exists():
        funnel = convert_collecting(read_yaml(path, problems) or {}, FunnelFile, str(path), problems)
    path = folder / "shading.json"
    if path.exists():
        try:
            shading = msgspec.json.decode(path.read_bytes(), type=ShadingFile)
        except (msgspec.ValidationError, msgspec.DecodeError, OSError) as exc:
            problems.append(ConfigProblem(str(path), "", str(exc)))
    return Learned.of(funnel, shading)
