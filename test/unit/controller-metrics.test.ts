import { afterEach, describe, expect, it } from "vitest";
import { controllerMetrics } from "../../src/controller/metrics/controller-metrics.js";
import { startProbeServer, type ProbeServer } from "../../src/controller/http/probe-server.js";

describe("the controller's metrics", () => {
  it("has reconciles, queue depth, boot modes and startup, in the Prometheus text format", async () => {
    const m = controllerMetrics();
    m.bootTotal.inc({ mode: "resume" });
    m.startupSeconds.observe({ mode: "resume" }, 1.5);
    const text = await m.render();
    expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of [
      "hexclave_emulator_reconcile_total",
      "hexclave_emulator_reconcile_duration_seconds",
      "hexclave_emulator_reconcile_errors_total",
      "hexclave_emulator_workqueue_depth 0",
      'hexclave_emulator_boots_total{mode="resume"} 1',
      'hexclave_emulator_startup_seconds_bucket{le="2",mode="resume"} 1',
      "hexclave_emulator_leader 0",
    ]) {
      expect(text).toContain(name);
    }
  });

  it("reports Emulators by phase from the leader only, so a standby does not count them twice", async () => {
    let leading = false;
    const phases = ["Ready", "Ready", undefined, "Degraded"];
    const m = controllerMetrics({ leading: () => leading, phases: () => phases });
    expect(await m.render()).not.toMatch(/^hexclave_emulator_emulators\{/m);
    leading = true;
    const text = await m.render();
    expect(text).toContain('hexclave_emulator_emulators{phase="Ready"} 2');
    expect(text).toContain('hexclave_emulator_emulators{phase="Pending"} 1');
    expect(text).toContain('hexclave_emulator_emulators{phase="Degraded"} 1');
    expect(text).toContain('hexclave_emulator_emulators{phase="Terminating"} 0');
    leading = false;
    expect(await m.render()).not.toMatch(/^hexclave_emulator_emulators\{/m);
  });

  it("keeps one registry per controller, so two controllers in one process do not collide", async () => {
    const a = controllerMetrics();
    const b = controllerMetrics();
    a.queueAdds.inc();
    expect(await b.render()).toContain("hexclave_emulator_workqueue_adds_total 0");
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
      metrics: { render: () => Promise.resolve("m 1\n"), contentType: "text/plain; version=0.0.4" },
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
