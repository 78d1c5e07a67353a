from dsp.money import (
    cpm_to_micros_per_imp,
    micros_per_imp_to_cpm,
    micros_to_units,
    round_half_away,
    units_to_micros,
)


def test_round_half_away_from_zero() -> None:
    assert [round_half_away(x) for x in (2.5, 3.5, -2.5, 0.4999, -0.5)] == [3, 4, -3, 0, -1]


def test_cpm_round_trip() -> None:
    assert cpm_to_micros_per_imp(2.5) == 2500
    assert cpm_to_micros_per_imp(0.0015) == 2  # 1.5 micros rounds up, not to even
    assert micros_per_imp_to_cpm(2500) == 2.5


def test_units_round_trip() -> None:
    assert units_to_micros(500.0) == 500_000_000
    assert micros_to_units(units_to_micros(12.345678)) == 12.345678
