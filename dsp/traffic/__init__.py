"""Invalid traffic and supply path: data (bot user agents, data-centre ranges, sellers.json,
ads.txt) parsed once into lookup structures that the bid path queries in O(log n) or better.

Parsers and matchers are pure; :mod:`dsp.config.traffic` loads the files named in
``bidder_configs/traffic.yaml`` and :mod:`dsp.bidding.quality` holds the thin gates.
"""
