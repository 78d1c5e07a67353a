"""The per-exchange hooks: code for what a profile's data cannot say, registered in ONE table.

    hooks = hooks_for(profile)              # ExchangeHooks (NO_HOOKS when the exchange needs none)
    req = decoder.decode(body, lax_numbers=profile.lax_numbers, hook=hooks.normalise_request)
    ...
    if hooks.decorate_response is not None:
        hooks.decorate_response(response, req, profile)

Two hook points, both called by the bid endpoint (:mod:`dsp.server.bid_endpoint`):

* ``normalise_request(req)`` — after decoding and the generic 2.5 -> 2.6 normalisation, *before*
  the semantic checks (so a moved field is validated like a native one); mutates ``req`` in place.
* ``decorate_response(response, req, profile)`` — after pricing, before encoding; mutates the
  :class:`dsp.openrtb.response.BidResponse` in place (an exchange's extra response fields).

Hooks are pure (no I/O, no clock) and cheap: they run on every request of their exchange. An alias
profile (``alias_of``) uses its parent's hooks. Adding a quirk: a function in
``dsp/exchanges/<exchange>.py``, one entry in :data:`HOOKS`, one story fixture.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from dsp.exchanges import smaato
from dsp.exchanges.profile import ExchangeProfile
from dsp.openrtb.request import BidRequest
from dsp.openrtb.response import BidResponse

NormaliseRequest = Callable[[BidRequest], None]
DecorateResponse = Callable[[BidResponse, BidRequest, ExchangeProfile], None]


class ExchangeHooks(msgspec.Struct, frozen=True):
    """One exchange's hooks; None where it needs none."""

    normalise_request: NormaliseRequest | None = None
    decorate_response: DecorateResponse | None = None


NO_HOOKS = ExchangeHooks()

#: The registry: profile name -> hooks. Explicit, in one place; nothing registers by import.
HOOKS: dict[str, ExchangeHooks] = {
    "smaato": ExchangeHooks(normalise_request=smaato.move_udi_to_ifa),
}


def hooks_for(profile: ExchangeProfile, registry: dict[str, ExchangeHooks] | None = None) -> ExchangeHooks:
    """The hooks of ``profile`` (its parent's for an alias); :data:`NO_HOOKS` when none."""
    return (HOOKS if registry is None else registry).get(profile.hook_name, NO_HOOKS)
