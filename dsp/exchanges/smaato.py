"""Smaato's quirks that data cannot express.

Smaato's older OpenRTB integration sends the device advertising id in ``ext.udi`` (``idfa`` on
iOS, ``googleadid`` on Android) instead of ``device.ifa`` (see the RTBkit connector sample in
``openrtb-corpus/rtbkit/smaato.json``: ``"ext": {"udi": {"idfa": ...}}`` and no ``device.ifa``).
Without the move, such a user has no id we can look up and every user-level campaign no-bids
USER_UNKNOWN.
"""

from __future__ import annotations

from dsp.openrtb.request import BidRequest, Device


def move_udi_to_ifa(req: BidRequest) -> None:
    """Copy ``ext.udi.idfa`` (else ``googleadid``) to ``device.ifa`` when that is empty. In place.
    Privacy signals still apply afterwards: ``lmt``/``dnt`` and GDPR decide whether it is used."""
    ext = req.ext
    if ext is None or ext.udi is None:
        return
    ifa = ext.udi.idfa or ext.udi.googleadid
    if not ifa:
        return
    if req.device is None:
        req.device = Device(ifa=ifa)
    elif not req.device.ifa:
        req.device.ifa = ifa
