"""Exchange dialects: data first, code only for what data cannot say.

Every exchange is a profile in ``bidder_configs/exchanges/<name>.yaml`` (schema:
:class:`dsp.config.schema.ExchangeFile`; compiled as ``ExchangeProfile`` in the config snapshot):
route name, OpenRTB version, currency, default auction type, tmax default, round-trip allowance,
safety margin, seat, lax numeric parsing, no-bid body, first-price shading, notice URLs. The
shipped profiles (``generic``, ``smaato``, ``nexage``, ``bidswitch``) cover the corpus dialects
with data alone: numeric strings (lax decoding), 2.5 ``ext`` locations (normalised for every
exchange), exchange-specific ``at`` codes (the profile's auction type applies), nbr bodies.

When a quirk cannot be expressed as data, it becomes a small named hook in this package's
``<exchange>.py`` module, registered explicitly in one table here and called by the HTTP
adapter before decoding or after encoding — never an ``if exchange == ...`` in dsp.bidding.
None is needed yet.
"""
