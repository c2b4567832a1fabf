/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection does it: a candidate takes the Lease when it is free or
 * when its holder has not renewed it for leaseDuration as observed on the
 * candidate's own clock (no cross-node clock comparison); the leader renews
 * every retryPeriod and steps down when it could not renew for
 * renewDeadline. Every write carries the resourceVersion it read, so two
 * candidates can never both win.
 * The renew deadline is a timer, not a check after a call returns: a leader
 * whose API server stopped answering steps down when the deadline passes,
 * while its call still hangs, and so before any standby can take the Lease
 * (leaseDuration > renewDeadline). Its calls also time out on their own
 * (the controller gives the elector an API with a short request timeout).
 */
import type { V1Lease } from "@kubernetes/client-node";
import type { LeaseApi } from "./kube/client.js";
import { isAlreadyExists, isConflict, isNotFound } from "./kube/errors.js";

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSec: number;
  renewDeadlineSec: number;
  retryPeriodSec: number;
  now?: () => number;
  log?: (msg: string) => void;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  onStoppedLeading(): void;
  onNewLeader?(identity: string): void;
}

/** Lease times are MicroTime: RFC 3339 with six fractional digits. */
export const microTime = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private observed: { holder: string; renewTime: string; at: number } | undefined;
  private lastRenew = 0;
  private steppedDownAt: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private deadline: ReturnType<typeof setTimeout> | undefined;
  private wake: (() => void) | undefined;
  private callbacks: LeaderCallbacks | undefined;
  private readonly now: () => number;

  constructor(
    private readonly api: LeaseApi,
    private readonly opts: LeaderOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Runs until stop(): campaigns, then renews; calls back on every change. */
  async run(cb: LeaderCallbacks): Promise<void> {
    this.callbacks = cb;
    let lastLeader = "";
    while (!this.stopped) {
      let ok = false;
      const started = this.now();
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        this.opts.log?.(`leader election: ${(err as Error).message}`);
      }
      if (this.stopped) break;
      if (ok && (this.leading || !this.lostWhile(started))) {
        // Renewed: the deadline counts from when this round began (the Lease says renewTime then).
        this.lastRenew = started;
        this.armDeadline();
        if (!this.leading) {
          this.leading = true;
          this.opts.log?.(`${this.opts.identity} became the leader`);
          cb.onStartedLeading();
        }
      }
      const holder = this.observed?.holder ?? "";
      if (holder && holder !== lastLeader) {
        lastLeader = holder;
        cb.onNewLeader?.(holder);
      }
      const jitter = this.leading ? 1 : 1 + Math.random() * 0.2;
      await this.sleep(this.opts.retryPeriodSec * 1000 * jitter);
    }
    clearTimeout(this.deadline);
    if (this.leading) {
      await this.release().catch(() => undefined);
      this.leading = false;
      cb.onStoppedLeading();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
  }

  /** A leader steps down renewDeadline after its last renewal, whatever its calls are doing. */
  private armDeadline(): void {
    clearTimeout(this.deadline);
    const left = this.lastRenew + this.opts.renewDeadlineSec * 1000 - this.now();
    this.deadline = setTimeout(() => this.stepDown(), Math.max(left, 0));
    this.deadline.unref?.();
  }

  private stepDown(): void {
    if (!this.leading || this.stopped) return;
    this.leading = false;
    this.steppedDownAt = this.now();
    this.opts.log?.(`${this.opts.identity} lost the lease (no renewal for ${this.opts.renewDeadlineSec} s)`);
    this.callbacks?.onStoppedLeading();
  }

  /** A round that began before this replica stepped down must not make it leader again. */
  private lostWhile(started: number): boolean {
    return this.steppedDownAt !== undefined && started <= this.steppedDownAt;
  }

  /** One round of client-go's tryAcquireOrRenew. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity, leaseDurationSec } = this.opts;
    const t = this.now();
    let lease: V1Lease;
    try {
      lease = await this.api.getLease(namespace, name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        const created = await this.api.createLease({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: leaseDurationSec,
            acquireTime: microTime(t) as never,
            renewTime: microTime(t) as never,
            leaseTransitions: 0,
          },
        });
        this.observe(created, t);
        return true;
      } catch (e) {
        if (isAlreadyExists(e) || isConflict(e)) return false;
        throw e;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    this.observe(lease, t);
    const duration = (spec.leaseDurationSeconds ?? leaseDurationSec) * 1000;
    if (holder && holder !== identity && this.observed && this.observed.at + duration > t) return false;
    const mine = holder === identity;
    const next: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: leaseDurationSec,
        renewTime: microTime(t) as never,
        acquireTime: (mine && spec.acquireTime ? spec.acquireTime : microTime(t)) as never,
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      const updated = await this.api.replaceLease(next);
      this.observe(updated, t);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Hands the Lease back so a standby takes over at once (client-go's ReleaseOnCancel). */
  async release(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    const lease = await this.api.getLease(namespace, name);
    if (lease.spec?.holderIdentity !== identity) return;
    const t = this.now();
    await this.api.replaceLease({
      ...lease,
      spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(t) as never },
    });
  }

  private observe(lease: V1Lease, t: number): void {
    const holder = lease.spec?.holderIdentity ?? "";
    const renewTime = String(lease.spec?.renewTime ?? "");
    if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
      this.observed = { holder, renewTime, at: t };
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }
}
