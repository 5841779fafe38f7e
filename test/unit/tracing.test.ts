/** common/tracing.ts with tracing off: nothing registered, every helper a pass-through. */
import { initTracing, inSpan, traceparentEnv, tracesUrl, tracingClientInterceptors, tracingWorkerOptions } from '../../common/tracing';

test('the traces URL comes from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces', () => {
  expect(tracesUrl({})).toBeUndefined();
  expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })).toBe('http://c:4318/v1/traces');
  expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t/x' })).toBe('http://t/x');
});

test('without an endpoint nothing is registered: no interceptors, no TRACEPARENT, spans are pass-throughs', async () => {
  expect(initTracing('forge-test', {})).toBeUndefined();
  expect(tracingClientInterceptors()).toBeUndefined();
  expect(tracingWorkerOptions()).toBeUndefined();
  expect(traceparentEnv()).toEqual({});
  await expect(inSpan('x', async () => 42)).resolves.toBe(42);
  await expect(inSpan('x', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
});
