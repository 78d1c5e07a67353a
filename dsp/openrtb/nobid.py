"""No-bid reasons: one enum for the metric label, the decision log and the OpenRTB ``nbr`` code.

OpenRTB 2.6 / AdCOM no-bid reason codes used here: 0 unknown error, 1 technical error,
2 invalid request, 3 known web crawler, 4 suspected non-human traffic, 5 cloud, data centre or
proxy IP, 6 unsupported device, 7 blocked publisher or site, 8 unmatched user, 11 ads.txt
authorisation unavailable, 12 ads.txt authorisation violation, 15 insufficient auction time,
16 incomplete supply chain, 17 blocked supply chain node. Business reasons (risk, budget,
pacing, caps) have no dedicated code and map to 0, as the spec allows; the metric label keeps the detail.
"""

from __future__ import annotations

import enum


class NoBidReason(enum.Enum):
    """Why we did not bid. ``value`` is the stable label used in metrics and logs."""

    COPPA = "coppa"
    NO_CONSENT = "no_consent"
    PRIVACY_OPT_OUT = "privacy_opt_out"  # US opt-out of sale/sharing/targeting, or GPC
    KNOWN_CRAWLER = "known_crawler"
    NON_HUMAN_TRAFFIC = "non_human_traffic"  # missing or non-public device.ip
    DATA_CENTER_IP = "data_center_ip"
    UNAUTHORISED_SELLER = "unauthorised_seller"  # sellers.json / ads.txt / app-ads.txt
    ADS_TXT_UNAVAILABLE = "ads_txt_unavailable"
    SCHAIN_INCOMPLETE = "schain_incomplete"
    SCHAIN_BLOCKED = "schain_blocked"  # more resellers than the campaign allows
    BLOCKED_SEAT = "blocked_seat"
    CURRENCY_UNSUPPORTED = "currency_unsupported"
    NO_ELIGIBLE_CAMPAIGN = "no_eligible_campaign"
    BLOCKED_CATEGORY = "blocked_category"
    BLOCKED_ADVERTISER = "blocked_advertiser"
    BLOCKED_APP = "blocked_app"
    NO_MATCHING_CREATIVE = "no_matching_creative"
    USER_UNKNOWN = "user_unknown"
    RISK_TOO_HIGH = "risk_too_high"
    SCORE_TOO_HIGH = "score_too_high"  # a gate score of the scoring plan above a campaign's max
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
    NoBidReason.KNOWN_CRAWLER: 3,
    NoBidReason.NON_HUMAN_TRAFFIC: 4,
    NoBidReason.DATA_CENTER_IP: 5,
    NoBidReason.ADS_TXT_UNAVAILABLE: 11,
    NoBidReason.UNAUTHORISED_SELLER: 12,
    NoBidReason.SCHAIN_INCOMPLETE: 16,
    NoBidReason.SCHAIN_BLOCKED: 17,
    NoBidReason.MODEL_ERROR: 1,
    NoBidReason.FEATURES_UNAVAILABLE: 1,
    NoBidReason.INTERNAL_ERROR: 1,
    NoBidReason.OVERLOADED: 1,
}
