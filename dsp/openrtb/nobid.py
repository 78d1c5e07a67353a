"""No-bid reasons: one enum for the metric label, the decision log and the OpenRTB ``nbr`` code.

OpenRTB 2.6 / AdCOM no-bid reason codes used here: 0 unknown error, 1 technical error,
2 invalid request, 6 unsupported device, 7 blocked publisher or site, 8 unmatched user,
15 insufficient auction time. Business reasons (risk, budget, pacing, caps) have no
dedicated code and map to 0, as the spec allows; the metric label keeps the detail.
"""

from __future__ import annotations

import enum


class NoBidReason(enum.Enum):
    """Why we did not bid. ``value`` is the stable label used in metrics and logs."""

    COPPA = "coppa"
    NO_CONSENT = "no_consent"
    BLOCKED_SEAT = "blocked_seat"
    CURRENCY_UNSUPPORTED = "currency_unsupported"
    NO_ELIGIBLE_CAMPAIGN = "no_eligible_campaign"
    BLOCKED_CATEGORY = "blocked_category"
    BLOCKED_ADVERTISER = "blocked_advertiser"
    BLOCKED_APP = "blocked_app"
    NO_MATCHING_CREATIVE = "no_matching_creative"
    USER_UNKNOWN = "user_unknown"
    RISK_TOO_HIGH = "risk_too_high"
    INTENT_TOO_LOW = "intent_too_low"
    VALUE_NOT_POSITIVE = "value_not_positive"
    BELOW_FLOOR = "below_floor"
    FREQUENCY_CAPPED = "frequency_capped"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_BRAKE = "budget_brake"
    PACING_THROTTLED = "pacing_throttled"
    OUT_OF_SCHEDULE = "out_of_schedule"
    DEADLINE = "deadline"
    MODEL_ERROR = "model_error"
    FEATURES_UNAVAILABLE = "features_unavailable"
    INTERNAL_ERROR = "internal_error"
    OVERLOADED = "overloaded"  # shed by dsp.server.overload before decoding

    @property
    def nbr(self) -> int:
        """The OpenRTB ``BidResponse.nbr`` code for this reason."""
        return _NBR.get(self, 0)


_NBR: dict[NoBidReason, int] = {
    NoBidReason.COPPA: 7,
    NoBidReason.BLOCKED_SEAT: 7,
    NoBidReason.BLOCKED_APP: 7,
    NoBidReason.USER_UNKNOWN: 8,
    NoBidReason.DEADLINE: 15,
    NoBidReason.MODEL_ERROR: 1,
    NoBidReason.FEATURES_UNAVAILABLE: 1,
    NoBidReason.INTERNAL_ERROR: 1,
    NoBidReason.OVERLOADED: 1,
}
