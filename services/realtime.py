"""Real-time scheduling of the data path: ``pipeline.realtime_priority`` puts the sensor, filter, chip
and readout under ``SCHED_FIFO``.

Why: at 1× the pipeline needs about 0.6 of a core, yet under the normal scheduler a stage that its
input wakes often waits behind another runnable process. Those waits make the tail of the wall
latency. Under ``SCHED_FIFO`` a woken stage runs before any normal process. On the 2-vCPU bench
machine (a shared host: runs vary) the p99 from the sensor to the subscriber went from 6.7–11.2 ms
over six runs to 2.7–7.2 ms (median 5.1) over nine, and the p50 from 3.1–4.8 ms to 2.0–2.7 ms
(``bench/pipeline.py``; the subscriber ran at the same priority; README "Latency").

Off by default, because it is a privilege and a risk:

* the OS must allow it: root, ``CAP_SYS_NICE``, or an ``RLIMIT_RTPRIO`` of at least the priority
  (``ulimit -r``; limits.conf; docker compose ``ulimits: rtprio``). Under the systemd units the
  sandbox refuses it, and the drop-in ``deploy/systemd/realtime.conf`` has systemd set it instead.
  When it is refused, the service logs how to allow it and runs under the normal scheduler;
* a real-time process that cannot keep up takes the CPU from everything else, up to the kernel's
  real-time limit (``/proc/sys/kernel/sched_rt_runtime_us``: 95 % by default).

So it never applies when the pipeline runs flat out by design (lossless mode, or a sensor replaying
at speed 0), nor to the exporter. Each service reports the priority it runs at (set by this module
or by its supervisor) as the telemetry value ``realtime_priority``; the exporter shows it as
``speck_service_realtime_priority``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Final

log = logging.getLogger("speck_edge.realtime")

DATA_PATH: Final = ("sensor", "filter", "chip", "readout")
"""The services on the way from the camera to a prediction: the ones that may run real-time."""
MAX_PRIORITY: Final = 99
"""Linux ``SCHED_FIFO`` priorities are 1–99 (sched(7)); 0 means the normal policy."""
HOW_TO_ALLOW: Final = (
    "run as root, give the process CAP_SYS_NICE, or raise its RLIMIT_RTPRIO to the priority "
    "(ulimit -r; docker compose: ulimits: rtprio; systemd: CPUSchedulingPolicy=fifo, see deploy/systemd)"
)

SetScheduler = Callable[[int, int, os.sched_param], None]


def check_priority(priority: int) -> int:
    """``priority`` if it is 0 (off) or a ``SCHED_FIFO`` priority, else ``ValueError``."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"realtime_priority must be 0 (off) or 1-{MAX_PRIORITY}, got {priority}")
    return priority


def current_priority() -> int:
    """The calling thread's real-time priority (``SCHED_FIFO``/``SCHED_RR``); 0 under a normal policy."""
    if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        return int(os.sched_getparam(0).sched_priority)
    return 0


def set_fifo(priority: int, set_scheduler: SetScheduler = os.sched_setscheduler) -> bool:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` (1–99); False if the OS refuses."""
    if check_priority(priority) == 0:
        raise ValueError("set_fifo needs a priority of 1-99, not 0")
    try:
        set_scheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return False
    return True


def request_realtime(
    service: str,
    priority: int,
    *,
    flat_out: bool,
    set_scheduler: SetScheduler = os.sched_setscheduler,
    current: Callable[[], int] = current_priority,
) -> bool:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority`` if ``service`` is on the data path,
    the pipeline is paced (not ``flat_out``: lossless mode, or a sensor replaying at speed 0) and
    ``priority`` is not 0. Threads started afterwards inherit the policy: call it after the start-up
    work (numba compiling, a recording generated) and before the first ZeroMQ socket, which starts
    the I/O thread that carries every message.

    True if the thread now runs at ``priority`` or above (also when its supervisor set that, e.g.
    systemd's ``CPUSchedulingPolicy=``). A refusal by the OS is logged with how to allow it, and the
    service goes on."""
    check_priority(priority)
    if priority == 0 or service not in DATA_PATH:
        return False
    now = current()
    if flat_out:
        if now:
            log.warning("%s: running flat out (lossless or speed 0) under SCHED_FIFO %d set by its supervisor: "
                        "it may starve everything else", service, now)  # fmt: skip
        else:
            log.info("%s: realtime_priority %d not applied: the pipeline runs flat out (lossless or speed 0)",
                     service, priority)  # fmt: skip
        return False
    if now >= priority:
        log.info("%s: already real-time (priority %d)", service, now)
        return True
    if not set_fifo(priority, set_scheduler):
        stays = f"stays at SCHED_FIFO {now}" if now else "runs under the normal scheduler"
        log.warning("%s: real-time priority %d refused (%s); it %s", service, priority, HOW_TO_ALLOW, stays)
        return False
    log.info("%s: running under SCHED_FIFO, priority %d", service, priority)
    return True
