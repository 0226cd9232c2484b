"""What every service says on ``telemetry``: the names the exporter turns into metrics.

Each service publishes one :class:`~proto.messages.Telemetry` every interval (and at exit) on its
PUB socket, with ``stream`` = the service's name (``sensor``, ``filter``, ``chip``, ``readout``).
Counters are cumulative since the process started (a restart starts them again at 0, which
Prometheus reads as a counter reset); gauges are the latest value. ``t_start_us``/``t_end_us`` is
the event-time span the service has seen.

Values every pipeline service sends (added by :mod:`services.runtime`):

* ``up`` (gauge, 1), ``uptime_s`` (gauge), ``pid`` (gauge), ``realtime_priority`` (gauge: the
  ``SCHED_FIFO`` priority the service runs at, 0 = the normal scheduler; :mod:`services.realtime`);
* ``messages_in``, ``messages_out``, ``events_in``, ``events_out`` (counters: records in and out
  of the data topics; for the chip ``events_out`` counts spikes, for the readout predictions);

Groups every pipeline service sends:

* ``dropped_messages`` — reason → counter: ``sequence_gap`` (messages a PUB lost before this
  service, from sequence numbers), ``decode_<reason>`` (a malformed message, one of
  :data:`proto.codec` reasons, e.g. ``decode_bad_msgpack``);
* ``timing_us`` — over the last interval: ``hop_p50``, ``hop_p99``, ``hop_max`` (upstream send → this
  service's receive, wall clock, per message) and ``handle_p50``/``_p99``/``_max`` (one burst of
  queued messages, joined (:mod:`services.coalesce`): step, encode, send);
* ``dropped_events`` — reason → counter: events this stage dropped on purpose (filter: ``noise``,
  ``polarity``, ``roi``, ``outside_sensor``; chip: ``masked``, ``outside_core``).

Per service:

* ``filter``: groups ``energy_j`` — rail → active joules (input events priced at the DVS layer),
  ``active_power_w`` — rail → watts over the last interval of event time.
* ``chip``: values ``synops``, ``neuron_updates``, ``windows``, ``masked_windows`` (counters),
  ``input_masked_ratio`` (gauge: masked / all input windows so far), ``model_time_s`` (counter:
  event time processed); groups ``spikes`` — layer name → counter, ``resting_power_w`` — rail →
  watts (constant, every rail incl. the sensor's), ``path_latency_ns`` — layer → modeled latency
  from the sensor to that layer's output (constant, :mod:`emulator.latency`), ``energy_j`` — rail → active joules, ``resting_energy_j`` — rail → joules
  (resting power over ``model_time_s``, every rail incl. the sensor's), ``active_power_w`` — rail →
  watts over the last interval of event time.
* ``readout``: values ``decisions``, ``predictions`` (counters); group ``predictions`` — label →
  counter.
* ``sensor``: see :mod:`services.sensor` (``events_sent``, ``batches_sent``, ``late_batches``, …).

A :class:`~proto.messages.Prediction` carries the readout's decision; ``extras["chip_latency_us"]`` is
the modeled chip latency of that decision (see :mod:`emulator.latency`), and ``origin_ns`` the wall
time the sensor sent the events it descends from (``sent_ns − origin_ns`` is the pipeline latency).
"""

from __future__ import annotations

from typing import Final

SERVICE_UP: Final = "up"
UPTIME_S: Final = "uptime_s"
PID: Final = "pid"
REALTIME_PRIORITY: Final = "realtime_priority"
MESSAGES_IN: Final = "messages_in"
MESSAGES_OUT: Final = "messages_out"
EVENTS_IN: Final = "events_in"
EVENTS_OUT: Final = "events_out"
DROPPED_MESSAGES: Final = "dropped_messages"
DROPPED_EVENTS: Final = "dropped_events"
SEQUENCE_GAP: Final = "sequence_gap"
TIMING_US: Final = "timing_us"
DECODE_PREFIX: Final = "decode_"
TIME_RESETS: Final = "time_resets"
"""Counter of the filter, chip and readout: times event time went back (upstream restarted) and the
stage started afresh."""

ENERGY_J: Final = "energy_j"
RESTING_ENERGY_J: Final = "resting_energy_j"
ACTIVE_POWER_W: Final = "active_power_w"
RESTING_POWER_W: Final = "resting_power_w"
SPIKES: Final = "spikes"
SYNOPS: Final = "synops"
NEURON_UPDATES: Final = "neuron_updates"
WINDOWS: Final = "windows"
MASKED_WINDOWS: Final = "masked_windows"
INPUT_MASKED_RATIO: Final = "input_masked_ratio"
MODEL_TIME_S: Final = "model_time_s"
DECISIONS: Final = "decisions"
PREDICTIONS: Final = "predictions"
PATH_LATENCY_NS: Final = "path_latency_ns"
CHIP_LATENCY_US: Final = "chip_latency_us"
"""Key of ``Prediction.extras``: the modeled chip latency of the decision, µs."""
