"""Distributed sampling: a run's driver publishes pulls as tasks in the sample bank, and
``iapo worker`` processes on any machine draw them from their own endpoints.

The driver (``iapo run`` with ``execution: {mode: distributed}`` or ``--distributed``) keeps the
algorithm: :class:`DistributedSampler` stands in for the local sampler and waits for each round's
tasks. :class:`Worker` (``iapo worker --storage URL CONFIG``: :func:`register_cli`) takes tasks
under a lease, draws them through the bank's claims (each (distribution, index) paid once) and
heartbeats. Guarantees: the same samples, hence the same policy, as a one-process run with the
same seed; no completion paid twice; a dead worker's tasks go to others when its lease lapses; a
restarted driver publishes only what the bank lacks.
"""

from __future__ import annotations

from iapo.distributed._cli import register_cli
from iapo.distributed._driver import (
    BEAT_FRESH,
    DistributedSampler,
    Monitor,
    format_status,
    live_workers,
    query_inputs,
)
from iapo.distributed._worker import Refused, Worker, WorkerOptions

__all__ = [
    "BEAT_FRESH",
    "DistributedSampler",
    "Monitor",
    "Refused",
    "Worker",
    "WorkerOptions",
    "format_status",
    "live_workers",
    "query_inputs",
    "register_cli",
]
