"""Exception hierarchy. Expected outcomes (a bid, a no-bid) are values, not exceptions.

    DspError
    ├── RequestRejected          the client sent something we cannot process -> HTTP 4xx
    │   └── InvalidRequest       malformed or semantically invalid OpenRTB (has a JSON path) -> 400
    ├── ConfigInvalid            human-edited config has problems; carries every problem found
    ├── ModelContractError       a model needs a feature the store does not provide, or a prohibited one
    └── DependencyUnavailable    Redis/ONNX failed or timed out; callers degrade (unknown user, no-bid)

Catch the narrowest level that tells you what to do.
"""

from __future__ import annotations

from collections.abc import Sequence


class DspError(Exception):
    """Base class of every error raised on purpose by this package."""


class RequestRejected(DspError):
    """The client's request cannot be processed; answer with ``status`` (a 4xx)."""

    status: int = 400

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class InvalidRequest(RequestRejected):
    """Malformed or invalid OpenRTB. ``path`` names the offending field, e.g. ``imp[0].banner.w``."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message, status=400)
        self.path = path


class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    __slots__ = ("file", "message", "path")

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self.file!r}, {self.path!r}, {self.message!r})"


class ConfigInvalid(DspError):
    """Config validation failed; ``problems`` lists every problem found (not just the first)."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")


class ModelContractError(DspError):
    """A model cannot be used: missing or prohibited features, bad model config. Fail at start-up."""


class DependencyUnavailable(DspError):
    """A dependency (Redis, a model runner) failed or timed out. Degrade; never surface as a 5xx."""
