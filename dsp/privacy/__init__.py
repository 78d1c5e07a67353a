"""Privacy signals as decisions: TCF v2 (EU), GPP (its EU and US sections), US Privacy, GPC.

A capability of the bid path, pure and I/O-free: :func:`dsp.privacy.policy.decide` reads the
signals of one request once and answers whether user-level data may be used, and why not.
The bit-level decoders (:mod:`.tcf`, :mod:`.gpp`, :mod:`.usp`) follow the IAB's published
layouts; a string that does not parse is *malformed*, which always means "no user data" (never
a 4xx: the request is still a valid auction, only the consent is unusable).
"""
