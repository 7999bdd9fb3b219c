"""The collector's counters, exposed for Prometheus and copied into its heartbeat."""
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("eventscope.metrics")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("eventscope_messages_received", "Messages taken from the brokers", registry=r)
        self.stored = Counter("eventscope_messages_stored", "Messages newly stored", registry=r)
        self.duplicates = Counter("eventscope_messages_duplicate", "Redelivered messages already stored", registry=r)
        self.decode_errors = Counter("eventscope_decode_errors", "Messages stored with a decode note", registry=r)
        self.db_errors = Counter("eventscope_database_errors", "Failed batch writes (retried)", registry=r)
        self.expired = Counter("eventscope_messages_expired",
                               "Messages older than the event retention, acked without storing", registry=r)
        self.refused = Counter("eventscope_messages_refused",
                               "Messages the database refused even stripped to what the broker gave (logged)",
                               registry=r)
        self.lag = Gauge("eventscope_observer_lag", "Messages in the streams not yet stored", registry=r)

    def snapshot(self):
        return {
            "received": int(self.received._value.get()),
            "stored": int(self.stored._value.get()),
            "duplicates": int(self.duplicates._value.get()),
            "decode_errors": int(self.decode_errors._value.get()),
            "db_errors": int(self.db_errors._value.get()),
            "expired": int(self.expired._value.get()),
            "refused": int(self.refused._value.get()),
        }

    def serve(self, port, host="127.0.0.1"):
        """Expose /metrics; a port already in use is reported, not fatal."""
        if not port:
            return None
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            log.error("metrics port %s: %s (metrics not exposed)", port, error)
            return None
        log.info("metrics on http://%s:%s/metrics", host, port)
        return server
