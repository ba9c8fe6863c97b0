"""The master role: supervises worker processes (see supervisor.Master)."""

from .scaling import Bounds, Decision, Observed, decide
from .supervisor import Master

__all__ = ["Bounds", "Decision", "Master", "Observed", "decide"]
