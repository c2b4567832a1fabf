/**
 * Events on an Emulator for each transition (core/v1 Events, which
 * `kubectl describe` shows). Messages are built by the reconcile from facts
 * and never contain a key. Failing to record an event never fails a reconcile.
 */
import { randomBytes } from "node:crypto";
import type { CoreV1Event } from "@kubernetes/client-node";
import { API_VERSION, KIND, type Emulator } from "../crd/types.js";
import type { OwnedApi } from "../kube/client.js";

export const COMPONENT = "hexclave-emulator-controller";

/** What an Event is about: an Emulator, or an EmulatorPool or EmulatorClaim (their kind says which). */
export type EventSubject = Pick<Emulator, "metadata"> & { apiVersion?: string; kind?: string };

export interface EventRecorder {
  normal(emu: EventSubject, reason: string, message: string): void;
  warning(emu: EventSubject, reason: string, message: string): void;
}

export function buildEvent(
  emu: EventSubject,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
  instance: string,
  now: Date,
): CoreV1Event {
  const ns = emu.metadata.namespace ?? "default";
  const ts = now.toISOString();
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: {
      name: `${emu.metadata.name}.${now.getTime().toString(16)}${randomBytes(3).toString("hex")}`,
      namespace: ns,
    },
    involvedObject: {
      apiVersion: emu.apiVersion ?? API_VERSION,
      kind: emu.kind ?? KIND,
      name: emu.metadata.name,
      namespace: ns,
      uid: emu.metadata.uid,
      resourceVersion: emu.metadata.resourceVersion,
    },
    type,
    reason,
    message: message.slice(0, 1024),
    source: { component: COMPONENT },
    reportingComponent: COMPONENT,
    reportingInstance: instance.slice(0, 128),
    firstTimestamp: ts as never,
    lastTimestamp: ts as never,
    count: 1,
  };
}

export function eventRecorder(
  api: Pick<OwnedApi, "createEvent">,
  instance: string,
  log: (m: string) => void,
): EventRecorder {
  const emit = (emu: EventSubject, type: "Normal" | "Warning", reason: string, message: string) => {
    api.createEvent(buildEvent(emu, type, reason, message, instance, new Date())).catch((err: unknown) => {
      log(
        `could not record event ${reason} on ${emu.metadata.namespace}/${emu.metadata.name}: ${(err as Error).message}`,
      );
    });
  };
  return {
    normal: (emu, reason, message) => emit(emu, "Normal", reason, message),
    warning: (emu, reason, message) => emit(emu, "Warning", reason, message),
  };
}
