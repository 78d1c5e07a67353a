"""Known bots and crawlers by user agent: ~1,500 patterns, matched in a few microseconds.

    bots = BotMatcher.from_patterns(patterns)     # the crawler-user-agents list, plus extras
    bots.match("Mozilla/5.0 (compatible; Googlebot/2.1; ...)")   # -> "Googlebot/"

The shipped list (``bidder_configs/ivt/bot-user-agents.txt``, MIT licence, from the
open ``monperrus/crawler-user-agents`` project) is ~1,460 literal patterns and ~40 regular
expressions. One alternation of all of them costs ~300-600 µs per user agent in Python's ``re``
(it tries every branch at every position). Here the literals, and the regexes that only spell
out a few literals (``[wW]get``, ``Ahrefs(Bot|SiteAudit)``), become one *trie* regex (at each
position the engine follows one branch of a prefix tree); anchored regexes are tried at
position 0 only and the ~10 others one by one, each led by a literal. A first sight of a
130-character browser UA costs ~15 µs (``benchmarks/bench_quality.py``). User
agents repeat (a few thousand distinct strings carry most traffic), so answers are memoised in a
dict bounded to :data:`CACHE_SIZE` entries (cleared when full: memory cannot grow with traffic).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CACHE_SIZE = 20_000
MAX_UA_CHARS = 512  # longer user agents are matched on their first 512 characters


_TOKEN = re.compile(r"\\(.)|\[([^\]\\^]+)\]|\(([^()\\|^$]+(?:\|[^()\\|^$]+)+)\)|([^\[\]()\\|^$.*+?{}])")
MAX_EXPANSION = 16


def expand(pattern: str) -> list[str] | None:
    """The literal strings a simple regex matches, or None when it is not simple.

    Simple: literals, escapes, one-character classes (``[wW]get``), groups of literal
    alternatives (``Ahrefs(Bot|SiteAudit)``) and a top-level ``|`` of such parts; at most
    :data:`MAX_EXPANSION` strings. Such patterns join the trie instead of the slow regex part.
    """
    out: list[str] = []
    for branch in pattern.split("|") if "(" not in pattern else [pattern]:
        words = [""]
        pos = 0
        for m in _TOKEN.finditer(branch):
            if m.start() != pos:
                return None
            pos = m.end()
            esc, cls, grp, lit = m.groups()
            options = ([esc] if esc is not None else list(cls) if cls is not None
                       else grp.split("|") if grp is not None else [lit])
            words = [w + o for w in words for o in options]
            if len(words) > MAX_EXPANSION:
                return None
        if pos != len(branch) or not branch:
            return None
        out.extend(words)
    return out


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of ``words`` built from their prefix tree (``ab|ac`` -> ``a(?:b|c)``)."""
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:  # type: ignore[type-arg]
        ends = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return build(trie)


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


class BotMatcher:
    """Case-sensitive pattern match (as the list is written) with a bounded memo."""

    __slots__ = ("_anchored", "_cache", "_floating", "_trie", "size")

    def __init__(self, trie: str | None, anchored: re.Pattern[str] | None,
                 floating: tuple[re.Pattern[str], ...], size: int) -> None:
        self._trie = re.compile(trie) if trie else None
        self._anchored = anchored  # patterns starting with ^: tried at position 0 only
        self._floating = floating
        self._cache: dict[str, str | None] = {}
        self.size = size

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> BotMatcher:
        """Compile patterns (regexes as in the crawler-user-agents list). Raises ``re.error``."""
        literals: list[str] = []
        regexes: list[str] = []
        n = 0
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            n += 1
            words = expand(p)
            if words is None:
                re.compile(p)  # fail at load on a bad pattern, naming it
                regexes.append(p)
            else:
                literals.extend(words)
        anchored = [p for p in regexes if p.startswith("^")]
        # "(^| )X" as a look-behind keeps the literal X first, so re's fast prefix scan applies.
        floating = tuple(re.compile(p.replace("(^| )", "(?<![^ ])", 1))
                         for p in regexes if not p.startswith("^"))
        return cls(trie_regex(literals) if literals else None, _alternation(anchored), floating, n)

    def match(self, user_agent: str | None) -> str | None:
        """The matching text when ``user_agent`` is a known bot, else None."""
        if not user_agent:
            return None
        cache = self._cache
        try:
            return cache[user_agent]
        except KeyError:
            pass
        ua = user_agent[:MAX_UA_CHARS]
        m = None
        if self._trie is not None:
            m = self._trie.search(ua)
        if m is None and self._anchored is not None:
            m = self._anchored.match(ua)
        if m is None:
            for rx in self._floating:  # each starts with a literal: ~0.2 µs apiece
                m = rx.search(ua)
                if m is not None:
                    break
        hit = m.group(0) if m is not None else None
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[user_agent] = hit
        return hit
