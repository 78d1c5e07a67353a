"""Real-time bidding DSP for consumer-lending customer acquisition.

Layers (imports point down only; see docs/ARCHITECTURE.md):

    server/, cli            wiring: Redis clients, ONNX sessions, HTTP app, background tasks
    bidding/, notices/      one request's flow; one notice's effects
    exchanges/ config/ features/ scoring/ budget/ observability/   capabilities
    openrtb/ errors clock money                                    vocabulary
"""

__version__ = "0.1.0"

from dsp import compiled as _compiled

_compiled.select()  # compiled hot path or plain Python, before any other submodule is imported
