/**
 * OpenTelemetry tracing across API → workflow → activities → trainer, exported over OTLP/HTTP (JSON) when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set (spans go to `<endpoint>/v1/traces`, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
 * Without it nothing is registered: every helper here is a plain pass-through, and workers keep the pre-built
 * workflow bundle (which has no tracing interceptors).
 */
import { context, propagation, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { WorkflowClientInterceptor } from '@temporalio/client';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
} from '@temporalio/interceptors-opentelemetry';
import type { WorkerOptions } from '@temporalio/worker';

export interface Tracing {
  provider: BasicTracerProvider;
  resource: Resource;
  processor: SpanProcessor;
  /** Sends every ended span now (tests; before exit). */
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

let active: Tracing | undefined;

/** The OTLP/HTTP traces URL from the environment, or undefined when tracing is off. */
export function tracesUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return undefined;
  return `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`;
}

/**
 * Registers the process-wide tracer provider (W3C trace context, async-hooks context) exporting to OTLP, once per
 * process; later calls return the first. Undefined (nothing registered) when OTEL_EXPORTER_OTLP_ENDPOINT is unset.
 */
export function initTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
  if (active) return active;
  const url = tracesUrl(env);
  if (!url) return undefined;
  const resource = new Resource({ 'service.name': env.OTEL_SERVICE_NAME ?? serviceName });
  const processor = new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 1000 });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [processor] });
  provider.register({ contextManager: new AsyncLocalStorageContextManager(), propagator: new W3CTraceContextPropagator() });
  active = {
    provider,
    resource,
    processor,
    forceFlush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
      active = undefined;
    },
  };
  return active;
}

/** The tracing of this process, if initTracing registered one. */
export function activeTracing(): Tracing | undefined {
  return active;
}

/** The Temporal client's interceptors: starts and signals carry the trace context into workflows. */
export function tracingClientInterceptors(): { workflow: WorkflowClientInterceptor[] } | undefined {
  return active ? { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } : undefined;
}

/**
 * A worker's tracing options: the workflow interceptors (they must be bundled, so the worker bundles its workflows at
 * start instead of loading the pre-built bundle), their span sink, and the activity interceptors. Empty when off.
 */
export function tracingWorkerOptions(): Pick<WorkerOptions, 'interceptors' | 'sinks'> | undefined {
  if (!active) return undefined;
  return {
    interceptors: {
      workflowModules: [require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')],
      activity: [
        (ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) }),
      ],
    },
    sinks: { exporter: makeWorkflowExporter(active.processor, active.resource) },
  };
}

/** Runs `fn` in a span named `name` (a pass-through when tracing is off). */
export function traced<A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return (...args: A) => {
    if (!active) return fn(...args);
    return trace.getTracer('forge').startActiveSpan(name, async (span) => {
      try {
        return await fn(...args);
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
        throw err;
      } finally {
        span.end();
      }
    });
  };
}

/** Runs `fn` now in a span named `name` (a pass-through when tracing is off). */
export function inSpan<R>(name: string, fn: () => Promise<R>): Promise<R> {
  return traced(name, fn)();
}

/** TRACEPARENT for a trainer's environment: the W3C trace context of the active span (empty when off). */
export function traceparentEnv(): Record<string, string> {
  if (!active) return {};
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ? { TRACEPARENT: carrier.traceparent } : {};
}
