"""Privacy signals: TCF v2 core strings, GPP (header, tcfeuv2, US sections, uspv1), US Privacy, GPC.

Three kinds of evidence:

* strings the IAB publishes in its specifications (GPP header and string examples, the TCF v2
  specification's example TC string);
* strings encoded by the IAB Tech Lab's reference encoder (iabtcf.com) with their decoded values,
  as published in the test fixtures of LiveRamp's open-source decoder (``LiveRamp/iabconsent``);
* strings built here bit by bit (:mod:`dsp.testing.consent`, written from the specifications
  without the decoders): all purposes denied, all granted, our vendor denied, range encoding,
  publisher restrictions, each US state's opt-out offsets.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from dsp.openrtb.decode import normalise
from dsp.openrtb.request import BidRequest
from dsp.privacy.bits import Bits, Malformed
from dsp.privacy.gpp import US_SECTIONS, parse_gpp, us_opt_out
from dsp.privacy.policy import Privacy, PrivacyPolicy, decide
from dsp.privacy.tcf import NOT_ALLOWED, REQUIRE_CONSENT, REQUIRE_LI, decode_core, decode_vendor_ids
from dsp.privacy.usp import us_privacy_opted_out
from dsp.testing.consent import encode_bits, fibonacci, gpp_string, tc_string, us_section, usnat_section

OURS = 1234
POLICY = PrivacyPolicy(vendor_id=OURS)
ALL_PURPOSES = range(1, 11)

# -- published strings -------------------------------------------------------------------------

GPP_SPEC_TCF = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"


@pytest.mark.parametrize(("text", "ids"), [
    ("DBABM~" + GPP_SPEC_TCF, (2,)),  # GPP spec, example 1: EU TCF v2 only
    ("DBACNY~" + GPP_SPEC_TCF + "~1YNN", (2, 6)),  # example 2: TCF EU v2 and US Privacy
    ("DBABjw~" + GPP_SPEC_TCF + "~1YNN", (5, 6)),  # example 3: TCF Canada and US Privacy
    ("DBACNYA~" + GPP_SPEC_TCF + "~1YNN", (2, 6)),  # the macro example (one more pad letter)
])
def test_gpp_spec_examples(text: str, ids: tuple[int, ...]) -> None:
    gpp = parse_gpp(text)
    assert gpp.ids == ids
    assert gpp.sections[ids[0]] == GPP_SPEC_TCF


def test_gpp_spec_tcf_section_and_tcf_spec_example_decode() -> None:
    core = decode_core(GPP_SPEC_TCF, OURS)
    assert (core.version, core.consent_language, core.publisher_cc) == (2, "EN", "DE")
    assert core.purposes_consent == 0 and not core.vendor_consent
    spec = decode_core("CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA", OURS)
    assert spec.version == 2 and spec.consent_language == "EN"


# Encoded with the IAB Tech Lab's reference encoder; decoded values as published with them.
REFERENCE = {
    "COvzTO5OvzTO5B7ABCENAPCYAKdAADkAAIqIFhwBAAGAAXAFGAsMAhYAgAMAAegBYAEKAAA.IFoEUQQgAIQwgIwQ"
    "ABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAA"
    "AYQEAAAQmAgBC3ZAYzUw.QE5QAwCvgHyATkA": dict(
        cmp_id=123, cmp_version=1, vendor_list_version=15, policy_version=2, publisher_cc="FR",
        special=[1], consent=[1, 3, 6, 7, 8, 10], li=[3, 4, 5, 8], p1t=True,
        vendors=[12, 23, 163, 707], vendors_li=[48, 61, 88, 133]),
    "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA": dict(
        cmp_id=81, cmp_version=0, vendor_list_version=15, policy_version=2, publisher_cc="AA",
        special=[1], consent=[1, 3, 4, 7], li=[3, 4, 5], p1t=False,
        vendors=[2, 37, 61], vendors_li=[2, 6, 8]),
    "COvzTO5OvzTO5B7ABCENAPEYAIAAAIAAAIqIAAoAAoAA.QAAo.IAAo": dict(
        cmp_id=123, cmp_version=1, vendor_list_version=15, policy_version=4, publisher_cc="FR",
        special=[1], consent=[1], li=[1], p1t=True, vendors=[1], vendors_li=[1]),
}


@pytest.mark.parametrize("text", list(REFERENCE))
def test_reference_encoder_strings(text: str) -> None:
    want = REFERENCE[text]
    core = decode_core(text, 123)
    assert (core.cmp_id, core.cmp_version, core.vendor_list_version, core.policy_version,
            core.publisher_cc, core.consent_language) == (
        want["cmp_id"], want["cmp_version"], want["vendor_list_version"], want["policy_version"],
        want["publisher_cc"], "EN")
    assert [f for f in range(1, 13) if core.special_feature(f)] == want["special"]
    assert [p for p in range(1, 25) if core.purpose_consent(p)] == want["consent"]
    assert [p for p in range(1, 25) if core.purpose_li(p)] == want["li"]
    assert core.purpose_one_treatment is want["p1t"]
    consents, lis = decode_vendor_ids(text)
    assert sorted(consents) == want["vendors"] and sorted(lis) == want["vendors_li"]
    for v in want["vendors"]:  # the hot-path lookup agrees with the full set
        assert decode_core(text, v).vendor_consent
    assert not decode_core(text, 9999).vendor_consent


def test_reference_publisher_restrictions() -> None:
    text = "COvzTO5OvzTO5BRAAAENAPCoALIAADgAAAAAAewAwABAAlAB6ABBFADBQAQA9hAAAcAA"
    # published: purpose 1 require consent for vendor 123; purposes 2 and 3 with empty ranges
    assert decode_core(text, 123).restrictions == ((1, REQUIRE_CONSENT),)
    assert decode_core(text, 124).restrictions == ()


# -- strings built bit by bit ------------------------------------------------------------------

def _req(**regs_user: object) -> BidRequest:
    body = {"id": "r", "imp": [{"id": "1"}], **regs_user}
    return normalise(msgspec.json.decode(msgspec.json.encode(body), type=BidRequest))


def _eu(consent: str) -> BidRequest:
    return _req(regs={"gdpr": 1}, user={"buyeruid": "b", "consent": consent})


@pytest.mark.parametrize("range_encoding", [False, True])
def test_all_granted_allows_user_data(range_encoding: bool) -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, purposes_li=(2, 7), vendor_consents={1, OURS, 2000},
                   vendor_li={OURS}, range_encoding=range_encoding)
    d = decide(_eu(tc), POLICY)
    assert (d.user_data, d.eu, d.outcome) == (True, True, Privacy.CONSENT)


def test_all_denied() -> None:
    d = decide(_eu(tc_string()), POLICY)
    assert (d.user_data, d.eu, d.outcome) == (False, True, Privacy.GDPR_NO_CONSENT)
    assert "purpose 1" in d.detail


def test_our_vendor_denied_while_others_consented() -> None:
    for range_encoding in (False, True):
        tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={1, OURS - 1, OURS + 1, 3000},
                       range_encoding=range_encoding)
        d = decide(_eu(tc), POLICY)
        assert not d.user_data and d.detail == f"no consent for vendor {OURS}"


def test_range_encoding_covers_vendor_inside_a_range() -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents=set(range(1000, 1300)),
                   range_encoding=True)
    assert decode_core(tc, OURS).vendor_consent
    assert not decode_core(tc, 999).vendor_consent and not decode_core(tc, 1300).vendor_consent
    consents, _ = decode_vendor_ids(tc)
    assert consents == frozenset(range(1000, 1300))


@pytest.mark.parametrize("missing", [1, 3, 4])
def test_each_personalised_ads_purpose_is_required(missing: int) -> None:
    tc = tc_string(purposes_consent=set(ALL_PURPOSES) - {missing}, vendor_consents={OURS})
    d = decide(_eu(tc), POLICY)
    assert not d.user_data and d.detail == f"no consent for purpose {missing}"


def test_measurement_purpose_by_legitimate_interest() -> None:
    li_only = tc_string(purposes_consent={1, 3, 4}, purposes_li={7}, vendor_consents={OURS},
                        vendor_li={OURS})
    assert decide(_eu(li_only), POLICY).user_data
    li_without_vendor = tc_string(purposes_consent={1, 3, 4}, purposes_li={7}, vendor_consents={OURS})
    assert not decide(_eu(li_without_vendor), POLICY).user_data


@pytest.mark.parametrize(("purpose", "kind", "allowed"), [
    (3, NOT_ALLOWED, False),  # publisher forbids purpose 3 for us
    (4, REQUIRE_LI, False),  # consent purpose switched to LI: we cannot use it
    (7, REQUIRE_CONSENT, False),  # measurement needs consent, and only LI is given
    (7, REQUIRE_LI, True),
])
def test_publisher_restrictions(purpose: int, kind: int, allowed: bool) -> None:
    tc = tc_string(purposes_consent={1, 3, 4}, purposes_li={7}, vendor_consents={OURS},
                   vendor_li={OURS}, restrictions=[(purpose, kind, {OURS - 5, OURS})])
    assert decode_core(tc, OURS).restrictions == ((purpose, kind),)
    assert decide(_eu(tc), POLICY).user_data is allowed
    other = tc_string(purposes_consent={1, 3, 4}, purposes_li={7}, vendor_consents={OURS},
                      vendor_li={OURS}, restrictions=[(purpose, kind, {OURS + 1})])
    assert decide(_eu(other), POLICY).user_data  # a restriction on another vendor does not bind us


def test_special_features_when_the_policy_needs_them() -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS})
    assert not decide(_eu(tc), PrivacyPolicy(vendor_id=OURS, special_features=(1,))).user_data
    tc1 = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS}, special_features={1})
    assert decide(_eu(tc1), PrivacyPolicy(vendor_id=OURS, special_features=(1,))).user_data


def test_no_vendor_id_means_no_eu_user_data() -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS})
    d = decide(_eu(tc), PrivacyPolicy(vendor_id=None))
    assert (d.user_data, d.outcome) == (False, Privacy.GDPR_NO_VENDOR_ID)


def test_strings_without_the_restrictions_field_still_decode() -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS}, with_restrictions_field=False)
    assert decode_core(tc, OURS).restrictions == ()


@pytest.mark.parametrize("bad", [
    "", "....", "%%%", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA",  # a TCF v1 string
    tc_string(version=3), tc_string(purposes_consent={1})[:30],  # cut inside the fixed fields
    tc_string(vendor_consents={OURS}, max_vendor_id=4000)[:60],  # bit field runs past the end
])
def test_malformed_tc_strings_are_no_consent(bad: str) -> None:
    d = decide(_eu(bad), POLICY)
    assert not d.user_data and d.eu
    assert d.outcome in (Privacy.TCF_MALFORMED, Privacy.GDPR_NO_CONSENT)
    if bad:
        assert d.outcome is Privacy.TCF_MALFORMED and d.outcome.malformed


# -- GPP ---------------------------------------------------------------------------------------

def test_fibonacci_codes_match_the_spec_table() -> None:
    assert [fibonacci(n) for n in (1, 2, 3, 4, 5, 6, 7, 8)] == [
        "11", "011", "0011", "1011", "00011", "10011", "01011", "000011"]
    for n in range(1, 200):
        assert Bits.of(encode_bits(fibonacci(n) + "0" * 12)).fibonacci(0)[0] == n


def test_gpp_range_entries_from_the_spec() -> None:
    # Range(Fibonacci) example: 2 entries, id 3, then group 5..8 => [3, 5, 6, 7, 8]
    bits = "000011" + "000001" + "000000000010" + "0" + "0011" + "1" + "011" + "0011"
    assert parse_gpp("~".join([encode_bits(bits)] + ["x"] * 5)).ids == (3, 5, 6, 7, 8)


@pytest.mark.parametrize("field", ["sale", "sharing", "targeted"])
def test_usnat_opt_outs(field: str) -> None:
    choice: dict[str, Any] = {"sale": 2, "sharing": 2, "targeted": 2, field: 1}
    gpp = gpp_string({7: usnat_section(**choice)})
    d = decide(_req(regs={"gpp": gpp, "gpp_sid": [7]}, user={"buyeruid": "b"}), POLICY)
    assert (d.user_data, d.eu, d.outcome) == (False, False, Privacy.US_OPT_OUT)
    ok = gpp_string({7: usnat_section()})
    d = decide(_req(regs={"gpp": ok, "gpp_sid": [7]}, user={"buyeruid": "b"}), POLICY)
    assert (d.user_data, d.outcome) == (True, Privacy.NOT_OPTED_OUT)


def test_usnat_reference_string_did_not_opt_out() -> None:
    # The usnat fixture in LiveRamp/iabconsent: all notices given, no opt-out, GPC sub-section 0.
    choice = us_opt_out(7, "BVVqAAEABCA.QA")
    assert not choice.any


@pytest.mark.parametrize("sid", sorted(US_SECTIONS))
def test_each_state_section_reads_its_own_offsets(sid: int) -> None:
    layout = US_SECTIONS[sid]
    n_notices = (layout.sale - 6) // 2
    fields = [f for f in (layout.sale, layout.sharing, layout.targeted) if f is not None]
    for i in range(len(fields)):
        values = [2] * len(fields)
        values[i] = 1
        assert us_opt_out(sid, us_section(n_notices, values)).any
    assert not us_opt_out(sid, us_section(n_notices, [2] * len(fields))).any
    assert not us_opt_out(sid, us_section(n_notices, [0] * len(fields))).any  # not applicable
    assert us_opt_out(sid, us_section(n_notices, [2] * len(fields), gpc=True)).gpc


def test_gpp_sid_selects_the_applicable_sections() -> None:
    gpp = gpp_string({7: usnat_section(sale=1), 8: us_section(3, (2, 2))})
    only_ca = _req(regs={"gpp": gpp, "gpp_sid": [8]}, user={"buyeruid": "b"})
    assert decide(only_ca, POLICY).user_data
    national = _req(regs={"gpp": gpp, "gpp_sid": [7]}, user={"buyeruid": "b"})
    assert not decide(national, POLICY).user_data
    unspecified = _req(regs={"gpp": gpp}, user={"buyeruid": "b"})  # absent: all sections apply
    assert not decide(unspecified, POLICY).user_data


def test_gpp_tcfeuv2_section_is_the_tc_string() -> None:
    tc = tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS})
    ok = _req(regs={"gpp": gpp_string({2: tc}), "gpp_sid": [2]}, user={"buyeruid": "b"})
    assert (decide(ok, POLICY).user_data, decide(ok, POLICY).eu) == (True, True)
    denied = _req(regs={"gpp": gpp_string({2: tc_string()}), "gpp_sid": [2]}, user={"buyeruid": "b"})
    assert decide(denied, POLICY).outcome is Privacy.GDPR_NO_CONSENT


def test_uspv1_section_and_regs_us_privacy() -> None:
    assert not decide(_req(regs={"gpp": gpp_string({6: "1YYN"}), "gpp_sid": [6]}), POLICY).user_data
    assert decide(_req(regs={"gpp": gpp_string({6: "1YNN"}), "gpp_sid": [6]}), POLICY).user_data
    assert decide(_req(regs={"us_privacy": "1YYN"}), POLICY).outcome is Privacy.US_OPT_OUT
    assert decide(_req(regs={"ext": {"us_privacy": "1YNY"}}), POLICY).user_data
    assert decide(_req(regs={"us_privacy": "1---"}), POLICY).user_data


@pytest.mark.parametrize("regs", [{"gpc": 1}, {"ext": {"gpc": "1"}}, {"gpp": gpp_string({
    7: usnat_section(gpc=True)}), "gpp_sid": [7]}])
def test_gpc_means_no_user_data(regs: dict[str, object]) -> None:
    d = decide(_req(regs=regs), POLICY)
    assert (d.user_data, d.outcome) == (False, Privacy.GPC)
    assert decide(_req(regs=regs), PrivacyPolicy(vendor_id=OURS, honour_gpc=False)).user_data


@pytest.mark.parametrize(("regs", "outcome"), [
    ({"gpp": "DBABzw~1YNN", "gpp_sid": [6, 7]}, Privacy.GPP_MALFORMED),  # 2 ids, 1 section
    ({"gpp": "DBABM~x", "gpp_sid": [7]}, Privacy.GPP_MALFORMED),  # applicable section missing
    ({"gpp": "QQQQ~x", "gpp_sid": [2]}, Privacy.GPP_MALFORMED),  # wrong header type
    ({"gpp_sid": [7]}, Privacy.GPP_MALFORMED),  # sid without a string
    ({"gpp": gpp_string({7: "B"}), "gpp_sid": [7]}, Privacy.GPP_MALFORMED),  # section too short
    ({"gpp": gpp_string({7: usnat_section(sale=3)}), "gpp_sid": [7]}, Privacy.GPP_MALFORMED),
    ({"gpp": gpp_string({24: "BAAA"}), "gpp_sid": [24]}, Privacy.GPP_UNSUPPORTED),
    ({"gpp_sid": "7,x", "gpp": "DBABzw~1YNN~BVVqAAEABCA.QA"}, Privacy.GPP_MALFORMED),
    ({"us_privacy": "2YYN"}, Privacy.USP_MALFORMED),
    ({"us_privacy": "1YY"}, Privacy.USP_MALFORMED),
])
def test_malformed_gpp_and_usp_fail_closed(regs: dict[str, object], outcome: Privacy) -> None:
    d = decide(_req(regs=regs, user={"buyeruid": "b"}), POLICY)
    assert (d.user_data, d.outcome) == (False, outcome)


def test_no_regs_or_gdpr_zero_is_no_signal() -> None:
    assert decide(_req(), POLICY).outcome is Privacy.NO_SIGNAL
    assert decide(_req(regs={"gdpr": 0}), POLICY).outcome is Privacy.NO_SIGNAL


def test_us_privacy_strings() -> None:
    assert us_privacy_opted_out("1YYN") and us_privacy_opted_out("1nyn")
    assert not us_privacy_opted_out("1YNN") and not us_privacy_opted_out("1---")
    for bad in ("", "1", "1YYNN", "0YYN", "1XYN"):
        with pytest.raises(Malformed):
            us_privacy_opted_out(bad)


def test_any_string_is_a_decision_never_an_exception() -> None:
    """Seeded fuzz: random and mutated strings in every field give a decision, never a raise."""
    rng = random.Random(15)
    alphabet = "ABCDQwxyz019-_.~%= "
    seeds = [tc_string(purposes_consent=ALL_PURPOSES, vendor_consents={OURS}, range_encoding=True),
             gpp_string({2: GPP_SPEC_TCF, 6: "1YNN", 7: usnat_section()}), "1YNN"]

    def junk() -> str:
        if rng.random() < 0.5:  # mutate a valid string: flip, cut or splice characters
            text = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                text[rng.randrange(len(text))] = rng.choice(alphabet)
            return "".join(text[:rng.randint(0, len(text))])
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))

    for _ in range(2000):
        sid: list[int | str] = [rng.randint(0, 40) for _ in range(rng.randint(0, 3))]
        req = _req(regs={"gdpr": rng.randint(0, 1), "gpp": junk(), "gpp_sid": sid,
                         "us_privacy": junk()[:5]},
                   user={"buyeruid": "b", "consent": junk()})
        d = decide(req, POLICY)
        assert isinstance(d.outcome, Privacy)
        if not d.user_data:
            assert d.detail
