/**
 * Resuming a published snapshot outside start(), with the engine's own
 * pieces, for the sections that need several guests from ONE snapshot or an
 * instrumented QMP: a fresh session overlay, the resume plan, and host
 * forwarding that keeps the snapshot's guest ports.
 *
 * Why the forwarding matters: the guest's mock OAuth listens on the port it
 * was captured with (its guest port follows its host port), which is why the
 * snapshot key includes the host ports. A guest on other host ports must
 * forward them to the guest ports recorded in the snapshot; hostfwd is
 * host-side, not part of the migrated state nor of the layout hash.
 */
import { join } from "node:path";
import {
  SERVICE_NAMES,
  SNAPSHOT_FILES,
  createOverlay,
  ensurePhantoms,
  planFor,
  servicePorts,
  virtualSize,
  vmDirHost,
  writeRuntimeIso,
  type EngineContext,
  type PortForward,
  type PublishedSnapshot,
  type QemuPlan,
} from "../src/engine/index.js";

/** A fresh session overlay on the snapshot's layer (a resumed guest must not see another run's writes). */
export async function freshOverlay(ctx: EngineContext, snapshot: PublishedSnapshot): Promise<void> {
  const layer = join(snapshot.dir, SNAPSHOT_FILES.diskLayer);
  await createOverlay(
    ctx.qemuImg,
    ctx.paths.session,
    layer,
    await virtualSize(ctx.qemuImg, ctx.config.image),
  );
}

/** This config's host ports, forwarded to the guest ports the snapshot was captured with. */
export function forwardsFor(ctx: EngineContext, snapshot: PublishedSnapshot): PortForward[] {
  const parts = snapshot.manifest.keyParts;
  const captured = servicePorts({ portPrefix: Number(parts.portPrefix), ports: parts.hostPorts });
  return SERVICE_NAMES.map((s) => ({ hostPort: ctx.config.ports[s], guestPort: captured[s].guest }));
}

/** Overlay, phantoms, runtime ISO and the resume plan of `snapshot` for ctx's run dir and host ports. */
export async function prepareResume(ctx: EngineContext, snapshot: PublishedSnapshot): Promise<QemuPlan> {
  const { config, paths } = ctx;
  const layer = join(snapshot.dir, SNAPSHOT_FILES.diskLayer);
  await freshOverlay(ctx, snapshot);
  ensurePhantoms(paths.phantoms);
  await writeRuntimeIso(ctx, vmDirHost(ctx));
  const ramFile = ctx.strategy === "template" ? join(snapshot.dir, SNAPSHOT_FILES.ram) : undefined;
  const plan = planFor(ctx, "resume", { base: config.image, layer, session: paths.session }, ramFile);
  return { ...plan, forwards: forwardsFor(ctx, snapshot) };
}
