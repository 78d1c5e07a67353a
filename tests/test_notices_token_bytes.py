"""The notice tokens' bytes are a wire format: tokens signed before a change must verify after it.

Pinned here: exact tokens for a fixed key and payload (win/bill/loss, click, click id), and the
fast base64url and pre-keyed BLAKE2b paths against the standard library's definitions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from dsp.notices.tokens import ClickToken, NoticeToken, TokenSigner, _b64e

KEY = b"0123456789abcdef0123456789abcdef"
TOKEN = NoticeToken(kid="k1", bid_id="b-1", request_id="r-1", imp_id="1", campaign_id="c",
                    exchange="generic", bid_price_micros=1234, currency="USD", user_key="uk",
                    issued_at_s=1700000000, expires_at_s=1700003600)
BODY = "n6JrMaNiLTGjci0xoTGhY6dnZW5lcmljzQTSo1VTRKJ1a85lU_EAzmVT_xDCoAAA"


def test_notice_tokens_are_byte_for_byte_the_pinned_ones() -> None:
    signer = TokenSigner({"k1": KEY}, "k1")
    assert signer.sign_kinds(TOKEN, ["win", "bill", "loss"]) == [
        BODY + ".SqczhVOkdugsempcI4_l9A", BODY + ".5amQMCILPbqCHJKUAReK-w",
        BODY + ".gi9KNv1BfvEqwV4KIVwUwQ"]
    click = ClickToken(kid="k1", bid_id="b-1", campaign_id="c", exchange="generic",
                       issued_at_s=1700000000, expires_at_s=1700600000)
    assert signer.sign_click(click, "click") == (
        "l6JrMaNiLTGhY6dnZW5lcmljzmVT8QDOZV0YwMI.zAb8cRfg9S5qNxWddQ2SXA")
    assert signer.click_id("b-1") == "3FEhRmXUdLwlL1nrOrxQ3w"
    # the same signer keeps producing the same MAC (the pre-keyed state is copied, not consumed)
    assert signer.sign(TOKEN, "bill") == BODY + ".5amQMCILPbqCHJKUAReK-w"
    assert signer.verify(BODY + ".5amQMCILPbqCHJKUAReK-w", "bill", now_s=1700000001) == TOKEN


@given(st.binary(max_size=300))
def test_b64e_is_unpadded_base64url(raw: bytes) -> None:
    assert _b64e(raw) == base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@given(st.binary(max_size=300), st.sampled_from(["win", "bill", "loss", "click", "event"]))
def test_mac_is_keyed_blake2b_of_the_derived_kind_key(data: bytes, kind: str) -> None:
    signer = TokenSigner({"k1": KEY}, "k1")
    derived = hmac.digest(KEY, f"dsp-notice-kind:{kind}".encode(), "sha256")
    expected = hashlib.blake2b(data, key=derived, digest_size=16).digest()
    assert signer._mac("k1", kind, data) == expected
    assert signer._mac("k1", kind, data) == expected
