"""Exchange dialects: data first, code only for what data cannot say.

* :mod:`dsp.exchanges.profile` — the profile schema (one YAML file per exchange under
  ``bidder_configs/exchanges/``; ``alias_of`` reuses another profile with a few keys overridden);
* :mod:`dsp.exchanges.hooks` — the one registry of per-exchange hooks (normalise a request before
  validation, decorate a response after pricing), called by the bid endpoint;
* ``dsp/exchanges/<exchange>.py`` — the hook functions of one exchange (today: ``smaato``).

Never an ``if exchange == ...`` in dsp.bidding: a quirk is a profile key or a registered hook.
"""
