/** Cold boot and the guest steps every path shares (agent, share, rotation, health). */
import { readFileSync, writeFileSync } from "node:fs";
import { runtimeEnv } from "../config/index.js";
import { writeIso, runtimeConfigIsoSpec } from "../iso/index.js";
import { GuestAgent } from "../qemu/qga.js";
import { waitForHealthy, servicesFor, probeHost } from "../guest/health.js";
import { writeSecretFile, PLACEHOLDER_PCK, type RotatedSecrets } from "../guest/rotation.js";
import type { EngineContext } from "./context.js";
import type { Phases } from "./events.js";
import type { LaunchedVm } from "./launch.js";
import { baseFingerprint, createOverlay, readFingerprint, virtualSize } from "./disks.js";
import { forwardedPorts, hostShareOf, planFor } from "./plan.js";
import { existsSync } from "node:fs";

export async function writeRuntimeIso(ctx: EngineContext, vmDirHost: string): Promise<void> {
  const base = ctx.config.baseEnvFile ? readFileSync(ctx.config.baseEnvFile, "utf8") : "";
  const share = hostShareOf(ctx);
  const env = {
    ...runtimeEnv(ctx.config, vmDirHost),
    // Where the share appears under /host, so absolute host paths keep working
    // (an extension of the contract; images that do not know it mount at /host).
    STACK_EMULATOR_HOST_SHARE_PATH: share && share.path !== "/" ? share.path : "",
  };
  await writeIso(ctx.paths.runtimeIso, runtimeConfigIsoSpec(env, base));
}

/** The run dir as the guest sees it under /host, when the share covers it. */
export function vmDirHost(ctx: EngineContext): string {
  const share = hostShareOf(ctx);
  if (!share || share.readOnly) return "";
  const root = share.path.endsWith("/") ? share.path : `${share.path}/`;
  return ctx.paths.dir.startsWith(root) || share.path === "/" ? ctx.paths.dir : "";
}

/** Cold layout: the persistent overlay is reused while the base image is unchanged. */
export async function launchCold(ctx: EngineContext, phases: Phases): Promise<LaunchedVm> {
  const { paths, config } = ctx;
  const fp = baseFingerprint(config.image);
  if (existsSync(paths.session) && readFingerprint(paths.sessionFingerprint) === fp) {
    phases.info("reusing the existing overlay disk (changes persist)");
  } else {
    await createOverlay(
      ctx.qemuImg,
      paths.session,
      config.image,
      await virtualSize(ctx.qemuImg, config.image),
    );
    writeFileSync(paths.sessionFingerprint, fp, { mode: 0o600 });
  }
  await writeRuntimeIso(ctx, vmDirHost(ctx));
  await ctx.deps.checkPorts(config.bindAddress, forwardedPorts(ctx));
  return ctx.deps.launch(
    ctx.qemu.binary,
    planFor(ctx, "cold", { base: config.image, session: paths.session }),
    paths,
  );
}

export async function connectAgent(ctx: EngineContext, timeoutMs: number): Promise<GuestAgent> {
  const agent = await GuestAgent.connect(ctx.paths.qgaSocket, { timeoutMs: 10_000 });
  await agent.waitUntilReady({ timeoutMs });
  return agent;
}

export interface GuestReady {
  placeholderSecrets: boolean;
}

/** Rotation (or the loud placeholder warning), then every service healthy. */
export async function finishGuest(
  ctx: EngineContext,
  agent: GuestAgent,
  phases: Phases,
  healthTimeoutSec: number,
  secrets?: RotatedSecrets,
  signal?: AbortSignal,
): Promise<GuestReady> {
  let placeholderSecrets = false;
  let freshSince: number | undefined;
  if (ctx.config.rotation) {
    freshSince = Date.now();
    await phases.run("rotation", () => ctx.deps.rotate(agent, ctx.paths.internalPck, 60_000, secrets));
  } else {
    placeholderSecrets = true;
    phases.warn(
      "rotation is off (EMULATOR_NO_ROTATION=1): the snapshot's public placeholder secrets are live — do not expose this instance",
    );
    writeSecretFile(ctx.paths.internalPck, PLACEHOLDER_PCK);
  }
  await phases.run("health", () =>
    waitForHealthy(servicesFor(ctx.config), {
      host: probeHost(ctx.config.bindAddress),
      deadlineMs: healthTimeoutSec * 1000,
      ...(signal === undefined ? {} : { signal }),
      ...(freshSince === undefined ? {} : { requireFreshSince: freshSince }),
    }),
  );
  return { placeholderSecrets };
}
