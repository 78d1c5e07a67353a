"""Read ``bidder_configs/`` into typed Structs, collecting EVERY problem with its file and path.

    raw, problems = load_dir(Path("bidder_configs"))   # usable only when problems == []

msgspec stops at the first error of one ``convert`` call, so a file that fails is walked value by
value (into nested Structs and lists of them): one file with a typo'd key, a negative budget and two
bad creatives yields four problems, not one. Files that parse are kept, so the cross-file checks
(duplicate ids, unknown currencies, exchanges named by a campaign that have no profile, pacing
curves of 24 weights; :mod:`dsp.config.checks`) run on whatever parsed, beside the parse problems.

Values are what ``yaml.safe_load`` hands over: an unquoted ``2026-01-01`` arrives as a date, a
quoted one as a string; both convert to ``datetime.date``.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

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
    # Set when some files did not parse: cross-file checks must not blame their absence.
    unparsed_exchanges: frozenset[str] = frozenset()
    currencies_parsed: bool = True


def _split_msgspec_error(message: str) -> tuple[str, str]:
    marker = " - at `$"
    idx = message.rfind(marker)
    if idx < 0:
        return message, ""
    return message[:idx], message[idx + len(marker):].rstrip("`")


def _strip(tp: Any) -> Any:
    """``Annotated[X, Meta]`` -> X (constraints are checked by converting with the full type)."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct type inside ``tp`` (``S``, ``S | None``), else None."""
    base = _strip(tp)
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return base
    if get_origin(base) in (Union, types.UnionType):
        structs = [a for a in get_args(base) if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        if len(structs) == 1:
            return structs[0]
    return None


def _list_item_struct(tp: Any) -> type[msgspec.Struct] | None:
    base = _strip(tp)
    if get_origin(base) in (list, tuple):
        args = get_args(base)
        return _struct_of(args[0]) if args else None
    return None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and not key.startswith("[") else f"{prefix}{key}"


def _collect_value(value: Any, tp: Any, file: str, path: str,
                   problems: list[ConfigProblem]) -> None:
    """Append one problem per bad leaf of ``value`` (descending into Structs and lists of them)."""
    try:
        msgspec.convert(value, tp)
        return
    except msgspec.ValidationError as exc:
        error = exc
    before = len(problems)
    struct = _struct_of(tp)
    item = _list_item_struct(tp)
    if struct is not None and isinstance(value, dict):
        _collect_struct(value, struct, file, path, problems)
    elif item is not None and isinstance(value, list):
        for i, element in enumerate(value):
            _collect_value(element, item, file, f"{path}[{i}]", problems)
    if len(problems) == before:  # a constraint on the whole value (e.g. min_length), or a leaf
        message, sub = _split_msgspec_error(str(error))
        problems.append(ConfigProblem(file, _join(path, sub.lstrip(".")) if sub else path, message))


def _collect_struct(data: dict[Any, Any], kind: type[msgspec.Struct], file: str, path: str,
                    problems: list[ConfigProblem]) -> None:
    fields = {f.encode_name: f for f in msgspec.structs.fields(kind)}
    for key in data:
        if key not in fields:
            problems.append(ConfigProblem(file, _join(path, str(key)),
                                          f"unknown key (expected one of {', '.join(sorted(fields))})"))
    for name, field in fields.items():
        if name not in data:
            if field.required:
                problems.append(ConfigProblem(file, _join(path, name), "required key is missing"))
            continue
        _collect_value(data[name], field.type, file, _join(path, name), problems)


def convert_collecting(data: Any, kind: type[T], file: str,
                       problems: list[ConfigProblem]) -> T | None:
    """Convert ``data`` to ``kind``; on failure append one problem per bad value, at any depth.

    Two bad creatives give two problems (``creatives[0].w``, ``creatives[3].adomain``), each
    with the file and the path; a problem the per-value pass cannot localise (a cross-field
    constraint of msgspec) is reported once, as msgspec words it."""
    if not isinstance(data, dict):
        problems.append(ConfigProblem(file, "", f"expected a mapping, got {type(data).__name__}"))
        return None
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        error = exc
    before = len(problems)
    _collect_struct(data, kind, file, "", problems)
    if len(problems) == before:
        message, sub = _split_msgspec_error(str(error))
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


def _convert_all(files: list[tuple[Any, str]], kind: type[T], problems: list[ConfigProblem],
                 unparsed: set[str] | None = None) -> list[tuple[T, str]]:
    """Every file that converts; problems for the rest. ``unparsed`` collects the ``name`` (else
    the file stem) of files that did not convert."""
    out: list[tuple[T, str]] = []
    for data, path in files:
        obj = convert_collecting(data, kind, path, problems)
        if obj is not None:
            out.append((obj, path))
        elif unparsed is not None:
            name = data.get("name") if isinstance(data, dict) else None
            unparsed.add(name if isinstance(name, str) else Path(path).stem)
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


def load_dir(root: Path) -> tuple[RawConfig, list[ConfigProblem]]:
    """Read every config file under ``root``: what parsed (possibly partial) and every problem.

    The config may be used only when ``problems`` is empty; a partial one exists so that the
    cross-file checks can run on whatever parsed."""
    problems: list[ConfigProblem] = []
    campaigns = _convert_all(_read_kind(root / "campaigns", problems), CampaignFile, problems)
    unparsed: set[str] = set()
    exchanges = _convert_all(resolve_aliases(_read_kind(root / "exchanges", problems), problems),
                             ExchangeProfile, problems, unparsed)
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
    first_campaigns = tuple(c for c, path in campaigns if campaign_files[c.id] == path)
    first_exchanges = tuple(e for e, path in exchanges if exchange_files[e.name] == path)
    raw = RawConfig(first_campaigns, first_exchanges, currencies or CurrencyFile(rates={"USD": 1.0}),
                    campaign_files, exchange_files, learned, privacy or PrivacyFile(),
                    frozenset(unparsed), currencies is not None)
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
