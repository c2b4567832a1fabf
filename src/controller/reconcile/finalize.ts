/**
 * An Emulator being deleted: the finalizer holds it until its Pod (and with
 * it the VM, stopped cleanly by the agent on SIGTERM) is gone, then the
 * Service and the Secret it owns are removed and the finalizer let go.
 * Objects of its names that are not its own are left alone.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { FINALIZER, type Emulator } from "../crd/types.js";
import { isNotFound, orNotFound } from "../kube/errors.js";
import { isOwnedBy, ownerOf, podName, secretName, serviceName } from "../objects/names.js";
import type { ReconcileDeps, ReconcileResult } from "./reconciler.js";

/** Waiting for a watched object's event: a reconcile anyway after this, should the event be lost. */
export const SAFETY_NET_MS = 30_000;

export function ignoreNotFound(err: unknown): void {
  if (!isNotFound(err)) throw err;
}

export async function deletePodOf(
  d: ReconcileDeps,
  m: { namespace?: string; name?: string; uid?: string },
  graceSec = d.options.agent.stopGraceSec + 15,
) {
  await d.api.deletePod(m.namespace ?? "", m.name ?? "", m.uid ?? "", graceSec).catch(ignoreNotFound);
}

/**
 * A Pod being deleted that its kubelet has not confirmed: how long until it is overdue (its
 * deletionTimestamp is the end of its grace period), <= 0 once it is.
 */
export function overdueInMs(d: ReconcileDeps, pod: V1Pod, now: Date): number | undefined {
  const end = pod.metadata?.deletionTimestamp;
  if (!end) return undefined;
  return new Date(end).getTime() + d.options.forceDeleteAfterSec * 1000 - now.getTime();
}

/**
 * Waiting for a Pod to go: its delete event wakes the next reconcile; past its grace period and
 * the force-delete bound, no kubelet will confirm it (a lost or NotReady node), so it is deleted
 * without waiting and an Event says so. The VM may still run on that node until its kubelet is back.
 */
export async function awaitPodGone(
  d: ReconcileDeps,
  emu: Emulator,
  pod: V1Pod,
  now: Date,
): Promise<ReconcileResult> {
  const left = overdueInMs(d, pod, now);
  if (left === undefined || left > 0)
    return { requeueAfterMs: Math.min(SAFETY_NET_MS, Math.max(left ?? 0, 0) + 50) };
  await deletePodOf(d, pod.metadata ?? {}, 0);
  d.events.warning(
    emu,
    "ForceDeleted",
    `Pod ${pod.metadata?.name} was not confirmed gone ${d.options.forceDeleteAfterSec} s after its grace period ` +
      `(node ${pod.spec?.nodeName ?? "unknown"} lost or not ready): deleted without waiting; its VM may run there until the node is back`,
  );
  return { requeueAfterMs: SAFETY_NET_MS };
}

export async function finalize(d: ReconcileDeps, emu: Emulator, now: Date): Promise<ReconcileResult> {
  if (!(emu.metadata.finalizers ?? []).includes(FINALIZER)) return {};
  const owner = ownerOf(emu);
  const pods = podName(owner.name);
  // The cache may not have seen a Pod created just now: without one there, ask the API.
  const pod = d.caches.pod(owner.namespace, pods) ?? (await d.api.readPod(owner.namespace, pods));
  if (pod && isOwnedBy(pod.metadata, owner.uid)) {
    if (!pod.metadata?.deletionTimestamp) {
      await deletePodOf(d, pod.metadata ?? {});
      d.events.normal(emu, "Stopping", `deleting Pod ${pods}: the agent stops the VM cleanly`);
    }
    if (emu.status?.phase !== "Terminating") {
      const status = { ...(emu.status ?? {}), phase: "Terminating" as const };
      await d.api.replaceEmulatorStatus({ ...emu, status }).catch(ignoreNotFound);
    }
    // The Pod's delete event (the informer maps it to this Emulator) wakes the next step.
    return pod.metadata?.deletionTimestamp
      ? awaitPodGone(d, emu, pod, now)
      : { requeueAfterMs: SAFETY_NET_MS };
  }
  const svcName = serviceName(owner.name);
  const svc =
    d.caches.service(owner.namespace, svcName) ?? (await d.api.readService(owner.namespace, svcName));
  if (svc && isOwnedBy(svc.metadata, owner.uid))
    await d.api.deleteService(owner.namespace, svcName, svc.metadata?.uid ?? "").catch(ignoreNotFound);
  const keys = secretName(owner.name);
  const secretMeta = await orNotFound(d.api.readSecretMeta(owner.namespace, keys));
  if (secretMeta && isOwnedBy(secretMeta, owner.uid))
    await d.api.deleteSecret(owner.namespace, keys, secretMeta.uid ?? "").catch(ignoreNotFound);
  const released = await d.api
    .replaceEmulator({
      ...emu,
      metadata: {
        ...emu.metadata,
        finalizers: (emu.metadata.finalizers ?? []).filter((f) => f !== FINALIZER),
      },
    })
    .then(
      () => true,
      (err: unknown) => {
        ignoreNotFound(err);
        return false;
      },
    );
  if (released) d.events.normal(emu, "Stopped", "the VM is stopped and the Pod, Service and Secret are gone");
  return {};
}
