"""The campaign console: a small web app (its own process and port) for the marketing team.

Wiring, like :mod:`dsp.server`: aiohttp lives here (:mod:`.app`); the pages are pure functions of
plain values (:mod:`.views`, :mod:`.charts`); the numbers come from offline code that reads the
event log with DuckDB (:mod:`dsp.offline.console_data`, :mod:`dsp.offline.forecast`). The serving
process never imports this package.
"""
