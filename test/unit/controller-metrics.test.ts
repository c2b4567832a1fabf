import { afterEach, describe, expect, it } from "vitest";
import { Registry } from "../../src/controller/metrics/registry.js";
import { controllerMetrics } from "../../src/controller/metrics/controller-metrics.js";
import { startProbeServer, type ProbeServer } from "../../src/controller/http/probe-server.js";

describe("Prometheus registry", () => {
  it("renders counters, gauges and histograms in the text format", () => {
    const r = new Registry();
    const c = r.counter("x_total", "Things.", ["result"]);
    c.inc({ result: "ok" });
    c.inc({ result: "ok" }, 2);
    c.inc({ result: 'we"ird\n' });
    const g = r.gauge("depth", "Depth.");
    g.set(4);
    const h = r.histogram("d_seconds", "Durations.", ["mode"], [0.1, 1]);
    h.observe(0.05, { mode: "resume" });
    h.observe(0.5, { mode: "resume" });
    h.observe(3, { mode: "resume" });
    expect(r.render()).toBe(
      [
        "# HELP x_total Things.",
        "# TYPE x_total counter",
        'x_total{result="ok"} 3',
        'x_total{result="we\\"ird\\n"} 1',
        "# HELP depth Depth.",
        "# TYPE depth gauge",
        "depth 4",
        "# HELP d_seconds Durations.",
        "# TYPE d_seconds histogram",
        'd_seconds_bucket{mode="resume",le="0.1"} 1',
        'd_seconds_bucket{mode="resume",le="1"} 2',
        'd_seconds_bucket{mode="resume",le="+Inf"} 3',
        'd_seconds_sum{mode="resume"} 3.55',
        'd_seconds_count{mode="resume"} 3',
        "",
      ].join("\n"),
    );
  });

  it("refuses unknown labels, negative counts and duplicate names", () => {
    const r = new Registry();
    const c = r.counter("a_total", "A.", ["x"]);
    expect(() => c.inc({ y: "1" })).toThrow(/no label y/);
    expect(() => c.inc({}, -1)).toThrow();
    expect(() => r.gauge("a_total", "again")).toThrow(/twice/);
  });

  it("has the controller's metrics: reconciles, queue depth, boot modes, startup", () => {
    const m = controllerMetrics();
    m.bootTotal.inc({ mode: "resume" });
    m.startupSeconds.observe(1.5, { mode: "resume" });
    const text = m.registry.render();
    for (const name of [
      "hexclave_emulator_reconcile_total",
      "hexclave_emulator_reconcile_duration_seconds",
      "hexclave_emulator_reconcile_errors_total",
      "hexclave_emulator_workqueue_depth 0",
      'hexclave_emulator_boots_total{mode="resume"} 1',
      'hexclave_emulator_startup_seconds_bucket{mode="resume",le="2"} 1',
      "hexclave_emulator_leader 0",
    ]) {
      expect(text).toContain(name);
    }
  });
});

describe("probe server", () => {
  let server: ProbeServer | undefined;
  afterEach(async () => {
    await server?.close();
  });

  it("answers /healthz, /readyz with the reason, /metrics and JSON routes", async () => {
    let ready: string | undefined = "informers have not synced";
    server = await startProbeServer({
      host: "127.0.0.1",
      port: 0,
      healthz: () => undefined,
      readyz: () => ready,
      metrics: () => "m 1\n",
      json: { "/status": () => ({ state: "ready" }) },
    });
    const get = (p: string) => fetch(`http://127.0.0.1:${server!.port}${p}`);
    expect((await get("/healthz")).status).toBe(200);
    const notReady = await get("/readyz");
    expect(notReady.status).toBe(503);
    expect(await notReady.text()).toBe("informers have not synced\n");
    ready = undefined;
    expect((await get("/readyz")).status).toBe(200);
    const metrics = await get("/metrics");
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await metrics.text()).toBe("m 1\n");
    expect(await (await get("/status")).json()).toEqual({ state: "ready" });
    expect((await get("/nope")).status).toBe(404);
  });
});
