"""Secrets from the environment and the start-up checks that keep a reachable bidder safe.

Every secret is an environment variable; config files only *name* the variables:

* ``DSP_TOKEN_KEYS`` — notice token keys (:mod:`dsp.server.settings`). Unset: one random key per
  start. More than one process (``--workers`` > 1 here, or several replicas) would then disagree,
  so :func:`startup_problems` refuses it unless ``--ephemeral-token-key`` says so explicitly.
* ``DSP_ADMIN_TOKEN`` — required for ``/admin/*`` (and ``/metrics``) whenever the admin port is
  bound beyond loopback; start-up refuses otherwise.
* ``DSP_USER_HASH_KEY`` — the key of the user-id hash (:mod:`dsp.features.keys`); unset: the
  documented development key, with a warning when the bid port is bound beyond loopback.
* exchange credentials (``auth.secret.env``, ``auth.basic.password_env`` in a profile) — a named
  variable that is unset refuses start-up (the profile would refuse every request).
* lender conversion secrets (``conversion_secret_env`` in a campaign) — unset: a warning (that
  campaign's conversions are refused with 401).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from dsp.config.snapshot import Snapshot
from dsp.exchanges.auth import missing_secrets
from dsp.features.keys import USER_HASH_KEY_ENV

ADMIN_TOKEN_ENV = "DSP_ADMIN_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; False for wildcards (``0.0.0.0``, ``::``,
    ``""``) and everything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def conversion_secrets(snapshot: Snapshot, env: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Campaign id -> its lender's conversion secret, for campaigns whose variable is set."""
    env = os.environ if env is None else env
    out: dict[str, bytes] = {}
    for c in snapshot.campaigns:
        value = env.get(c.conversion_secret_env or "", "") if c.conversion_secret_env else ""
        if value:
            out[c.id] = value.encode()
    return out


def startup_problems(snapshot: Snapshot, *, workers: int, token_keys_set: bool,
                     ephemeral_token_key: bool, admin_host: str,
                     env: Mapping[str, str] | None = None) -> list[str]:
    """Reasons ``dsp serve`` must not start (each names what to set)."""
    env = os.environ if env is None else env
    problems = []
    if workers > 1 and not token_keys_set and not ephemeral_token_key:
        problems.append("DSP_TOKEN_KEYS is unset and more than one process would serve: each "
                        "would sign notices with its own random key and the others' notices "
                        "would be refused (spend never recorded). Set DSP_TOKEN_KEYS, or pass "
                        "--ephemeral-token-key to accept that for a demo.")
    if not is_loopback(admin_host) and not env.get(ADMIN_TOKEN_ENV):
        problems.append(f"the admin port is bound to {admin_host!r} (beyond loopback) and "
                        f"{ADMIN_TOKEN_ENV} is unset: /admin/* would be open to the network.")
    for name, profile in sorted(snapshot.exchanges.items()):
        for var in missing_secrets(profile.auth, env):
            problems.append(f"exchange {name!r} names {var} for its credentials, but it is unset")
    return problems


def startup_warnings(snapshot: Snapshot, *, host: str, token_keys_set: bool,
                     env: Mapping[str, str] | None = None) -> list[str]:
    """What ``dsp serve`` prints at start-up without refusing."""
    env = os.environ if env is None else env
    out = []
    if not is_loopback(host):
        for name, profile in sorted(snapshot.exchanges.items()):
            if profile.auth is None:
                out.append(f"exchange {name!r} is open (no auth block) and the bid port is bound "
                           f"to {host!r}: anyone who reaches it can bid as {name!r}")
        if not env.get(USER_HASH_KEY_ENV):
            out.append(f"{USER_HASH_KEY_ENV} is unset: user ids are hashed with the documented "
                       "development key, so anyone with a raw id can link it to its key")
    if not token_keys_set:
        out.append("DSP_TOKEN_KEYS is unset: notices are signed with a random key; they will "
                   "not verify after a restart or on another replica")
    for c in snapshot.campaigns:
        if c.conversion_secret_env and not env.get(c.conversion_secret_env):
            out.append(f"campaign {c.id!r} names {c.conversion_secret_env} for its lender's "
                       "conversion secret, but it is unset: its conversions will be refused")
    return out
