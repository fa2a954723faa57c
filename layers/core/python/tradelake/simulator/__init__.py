"""The bundled Phemex-protocol exchange: a real websocket server on 127.0.0.1 serving a tape.

Used by ``tradelake demo``, by the test-suite and by anyone testing a capture without touching
Phemex. Needs the ``local`` extra (``websockets``); it is never shipped to Lambda.
"""

from tradelake.simulator.server import Faults, Simulator, SimulatorConfig, SimulatorStats, serve
from tradelake.simulator.tape import Tape, load_tape, synthetic_tape

__all__ = [
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "Tape",
    "load_tape",
    "serve",
    "synthetic_tape",
]
