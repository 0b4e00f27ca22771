// Prometheus metrics of the inference server (README.md, "Metrics"), on a registry of its own.
// Labels are public facts only: route patterns, worker ids, outcomes and error codes.
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export interface Metrics {
  registry: Registry;
  /** Requests waiting in each worker's queue (not yet sent to the worker). */
  queueDepth: Gauge<"worker">;
  /** Requests sent to each worker and not yet answered. */
  inFlight: Gauge<"worker">;
  /** 1 when the worker is attested and has its programs loaded. */
  workerReady: Gauge<"worker">;
  /** Latency per route pattern, seconds, from arrival to the last byte of the answer. */
  latency: Histogram<"route">;
  /** Requests by route, outcome (ok, refused, unavailable, timeout, truncated, error) and code. */
  requests: Counter<"route" | "outcome" | "code">;
  /** Bytes of sealed responses and stream records sent to clients. */
  sealedBytesOut: Counter<"route">;
  /** Worker processes restarted after an exit. */
  restarts: Counter<"worker">;
  /** Calls to the key broker, by operation and outcome. */
  brokerCalls: Counter<"op" | "outcome">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  const r = [registry];
  return {
    registry,
    queueDepth: new Gauge({ name: "veil_queue_depth", help: "Requests waiting in a worker's queue", labelNames: ["worker"], registers: r }),
    inFlight: new Gauge({ name: "veil_worker_in_flight", help: "Requests sent to a worker and not yet answered", labelNames: ["worker"], registers: r }),
    workerReady: new Gauge({ name: "veil_worker_ready", help: "1 when the worker is attested and its programs are loaded", labelNames: ["worker"], registers: r }),
    latency: new Histogram({
      name: "veil_request_duration_seconds",
      help: "Request latency by route, arrival to last byte",
      labelNames: ["route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    }),
    requests: new Counter({ name: "veil_requests_total", help: "Requests by route, outcome and error code", labelNames: ["route", "outcome", "code"], registers: r }),
    sealedBytesOut: new Counter({ name: "veil_sealed_bytes_out_total", help: "Bytes of sealed responses and stream records sent", labelNames: ["route"], registers: r }),
    restarts: new Counter({ name: "veil_worker_restarts_total", help: "Worker processes restarted after an exit", labelNames: ["worker"], registers: r }),
    brokerCalls: new Counter({ name: "veil_broker_calls_total", help: "Calls to the key broker by operation and outcome", labelNames: ["op", "outcome"], registers: r }),
  };
}

/** The outcome label of an HTTP status. */
export function outcomeOf(status: number, truncated = false): string {
  if (truncated) return "truncated";
  if (status < 400) return "ok";
  if (status === 503) return "unavailable";
  if (status === 504) return "timeout";
  if (status < 500) return "refused";
  return "error";
}
