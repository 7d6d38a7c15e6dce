"""The gateway's Prometheus metrics, all defined here, in one registry per gateway (never the
global default registry: several gateways in one process do not collide).

Most values are read at scrape time from state the gateway keeps anyway (``DeviceStatus``
counters, the store, the alarm manager, ``LocalControl``'s counters), so the poll and append paths
do no extra work.  Only what exists nowhere else is counted as it happens: the result and
latency of each batch upload (``GatewayMetrics.on_batch``, the sync client's hook).

=====================================  =========  ===============  ====================================
metric                                 type       labels           meaning
=====================================  =========  ===============  ====================================
gasiot_gateway_info                    gauge      gateway,version  always 1
gasiot_start_time_seconds              gauge                       when ``Gateway.run`` started (epoch s)
gasiot_device_online                   gauge      device           1 online, 0 offline or not heard yet
gasiot_points_read_total               counter    device           values received from the device
gasiot_read_errors_total               counter    device,kind      comm: request timed out / link
                                                                   failed; device: a point answered
                                                                   with an error; internal: our own
                                                                   processing failed
gasiot_poll_overruns_total             counter    device           poll slots skipped (poll too slow)
gasiot_queue_depth                     gauge      lane             records not yet acknowledged
gasiot_queue_oldest_age_seconds        gauge      lane             age of the record first in line
                                                                   (0 when empty)
gasiot_records_appended_total          counter    lane             records stored (kept across restarts)
gasiot_records_acked_total             counter    lane             records the cloud acknowledged
                                                                   (kept across restarts)
gasiot_telemetry_dropped_total         counter                     telemetry dropped by the disk bound
gasiot_store_write_errors_total        counter                     poll cycles the store failed to commit
gasiot_sync_last_ack_timestamp_seconds gauge      lane             last acknowledgement (lanes acked)
gasiot_sync_lag_seconds                gauge      lane             records waiting without any ack
                                                                   (``edge.health``); 0 when none wait
gasiot_sync_batches_total              counter    lane,result      upload attempts: acked, rejected
                                                                   (the cloud refused), failed (no
                                                                   answer)
gasiot_sync_batch_seconds              histogram  lane             upload time of acknowledged batches
gasiot_rule_evaluations_total          counter    trigger          rule-engine passes: readings (a
                                                                   poll cycle or delivery), timer (~1/s)
gasiot_rule_readings_total             counter                     readings fed to the rules
gasiot_alarms_active                   gauge      priority         alarms whose condition is active
=====================================  =========  ===============  ====================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge.health import Observed, snapshot
from edge.sync import BatchResult
from gascore.records import Lane

BATCH_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RESULTS: tuple[BatchResult, ...] = ("acked", "rejected", "failed")


class GatewayMetrics:
    """The registry of one gateway: event metrics plus a collector reading ``gateway``'s state."""

    def __init__(self, gateway_id: str, gateway: Observed, clock_ms: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batches = Counter(
            "gasiot_sync_batches",
            "Batch upload attempts by result: acked, rejected (the cloud refused), failed (no answer)",
            ["lane", "result"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "gasiot_sync_batch_seconds",
            "Upload time of acknowledged batches (request sent to ack read)",
            ["lane"],
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        for lane in Lane:  # every series exists from the first scrape, at 0
            self.batch_seconds.labels(lane.value)
            for result in RESULTS:
                self.batches.labels(lane.value, result)
        self.registry.register(_StateCollector(gateway_id, gateway, clock_ms))

    def on_batch(self, lane: Lane, result: BatchResult, seconds: float) -> None:
        """``SyncClient``'s ``on_batch`` hook."""
        self.batches.labels(lane.value, result).inc()
        if result == "acked":
            self.batch_seconds.labels(lane.value).observe(seconds)


def _version() -> str:
    try:
        return metadata.version("gasiot")
    except metadata.PackageNotFoundError:
        return "unknown"


class _StateCollector:
    """Reads the gateway's state at scrape time (in the event loop, like everything else)."""

    def __init__(self, gateway_id: str, gateway: Observed, clock_ms: Callable[[], int]) -> None:
        self.gateway_id = gateway_id
        self.gateway = gateway
        self.clock_ms = clock_ms
        self.version = _version()

    def collect(self) -> Iterable[Metric]:
        gw = self.gateway
        info = GaugeMetricFamily("gasiot_gateway_info", "Gateway identity", labels=["gateway", "version"])
        info.add_metric([self.gateway_id, self.version], 1)
        yield info
        yield GaugeMetricFamily("gasiot_start_time_seconds", "When the gateway started", value=gw.started_ms / 1000)
        yield from self._devices()
        snap = snapshot(gw, self.clock_ms())
        depth = GaugeMetricFamily("gasiot_queue_depth", "Records not yet acknowledged by the cloud", labels=["lane"])
        age = GaugeMetricFamily(
            "gasiot_queue_oldest_age_seconds", "Age of the record first in line (0 when empty)", labels=["lane"]
        )
        acked_at = GaugeMetricFamily(
            "gasiot_sync_last_ack_timestamp_seconds", "When the cloud last acknowledged a batch", labels=["lane"]
        )
        lag = GaugeMetricFamily(
            "gasiot_sync_lag_seconds", "How long records have waited without any acknowledgement", labels=["lane"]
        )
        for lane, h in snap.lanes.items():
            depth.add_metric([lane.value], h.depth)
            age.add_metric([lane.value], h.oldest_age_s(snap.now_ms) or 0.0)
            lag.add_metric([lane.value], snap.lag_s(lane) or 0.0)
            if h.last_ack_ms is not None:
                acked_at.add_metric([lane.value], h.last_ack_ms / 1000)
        yield from (depth, age, acked_at, lag)
        yield from self._store()
        yield from self._rules_and_alarms(snap.alarms_active)

    def _devices(self) -> Iterable[Metric]:
        online = GaugeMetricFamily("gasiot_device_online", "1 online, 0 offline or not heard yet", labels=["device"])
        points = CounterMetricFamily("gasiot_points_read", "Values received from the device", labels=["device"])
        errors = CounterMetricFamily(
            "gasiot_read_errors",
            "Read errors: comm (timeout, link), device (a point answered with an error), internal",
            labels=["device", "kind"],
        )
        overruns = CounterMetricFamily("gasiot_poll_overruns", "Poll slots skipped", labels=["device"])
        for device, st in sorted(self.gateway.statuses.items()):
            online.add_metric([device], 1 if st.online else 0)
            points.add_metric([device], st.samples)
            errors.add_metric([device, "comm"], st.failures)
            errors.add_metric([device, "device"], st.device_errors)
            errors.add_metric([device, "internal"], st.errors)
            overruns.add_metric([device], st.overruns)
        return (online, points, errors, overruns)

    def _store(self) -> Iterable[Metric]:
        counters = self.gateway.store.counters()
        appended = CounterMetricFamily("gasiot_records_appended", "Records stored", labels=["lane"])
        acked = CounterMetricFamily("gasiot_records_acked", "Records the cloud acknowledged", labels=["lane"])
        for lane in Lane:
            appended.add_metric([lane.value], counters.get(f"{lane.value}_appended_total", 0))
            acked.add_metric([lane.value], counters.get(f"{lane.value}_acked_total", 0))
        dropped = CounterMetricFamily(
            "gasiot_telemetry_dropped",
            "Telemetry dropped by the disk bound",
            value=counters.get("telemetry_dropped_total", 0),
        )
        failures = CounterMetricFamily(
            "gasiot_store_write_errors", "Poll cycles the store failed to commit", value=self.gateway.store_failures
        )
        return (appended, acked, dropped, failures)

    def _rules_and_alarms(self, active: dict[str, int]) -> Iterable[Metric]:
        local = self.gateway.local
        passes = CounterMetricFamily(
            "gasiot_rule_evaluations", "Rule-engine passes: readings (a poll cycle), timer (~1/s)", labels=["trigger"]
        )
        passes.add_metric(["readings"], local.rule_passes if local else 0)
        passes.add_metric(["timer"], local.rule_ticks if local else 0)
        readings = CounterMetricFamily(
            "gasiot_rule_readings", "Readings fed to the rules", value=local.readings_evaluated if local else 0
        )
        alarms = GaugeMetricFamily("gasiot_alarms_active", "Alarms whose condition is active", labels=["priority"])
        for priority, n in active.items():
            alarms.add_metric([priority], n)
        return (passes, readings, alarms)
