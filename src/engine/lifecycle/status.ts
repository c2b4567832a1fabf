/** status: the VM and each service separately. */
import type { EmulatorConfig } from "../config/index.js";
import { checkOnce, probeHost, servicesFor, type ServiceStatus } from "../guest/health.js";
import { isAlive, readPidFile } from "../qemu/process.js";
import { readState, runPaths, type RunState } from "./run-dir.js";

export interface StatusReport {
  ok: boolean;
  vm: { running: boolean; pid?: number | undefined };
  services: ServiceStatus[];
  state?: RunState | undefined;
  human: string;
}

export async function status(config: EmulatorConfig): Promise<StatusReport> {
  const paths = runPaths(config.runDir);
  const pid = readPidFile(paths.pidFile);
  const running = pid !== undefined && isAlive(pid);
  const state = readState(paths);
  const ports = state?.ports ? { ...config.ports, ...state.ports } : config.ports;
  const bind = state?.bindAddress ?? config.bindAddress;
  const services = await checkOnce(servicesFor({ ports: ports as EmulatorConfig["ports"] }), probeHost(bind));
  const ok = running && services.every((s) => s.ok);
  const mark = (b: boolean) => (b ? "✓" : "✗");
  const human = [
    "VM:",
    `  ${mark(running)} emulator${running ? ` (pid ${pid?.pid}${state ? `, ${state.bootMode}, QEMU ${state.qemuVersion}, ${state.accelerator}` : ""})` : ""}`,
    ...(state?.placeholderSecrets ? ["  WARNING: placeholder secrets are live"] : []),
    "Services:",
    ...services.map((s) => `  ${mark(s.ok)} ${s.name} (${s.endpoint})${s.ok ? "" : `: ${s.detail}`}`),
  ].join("\n");
  return { ok, vm: { running, pid: running ? pid?.pid : undefined }, services, state, human };
}
