/**
 * An informer that keeps itself alive: client-node's ListWatch (list, then
 * watch from the list's resourceVersion; a 410 Gone relists) over a bounded
 * watch (bounded-watch.ts: server-side timeout, bookmarks, a silent
 * connection ended here), plus what it leaves to the caller: a restart with
 * exponential backoff when the list or the watch fails (resuming from the
 * last resourceVersion), and a "synced" flag for /readyz. Handlers see every
 * add, update and delete, including the deletes a relist discovers.
 */
import {
  ListWatch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type Watch,
} from "@kubernetes/client-node";
import { BoundedWatch, DEFAULT_WATCH_BOUNDS, type WatchBounds } from "./bounded-watch.js";

export interface InformerHooks {
  /** A list or watch failed; the informer restarts after `delayMs`. */
  onRestart?(resource: string, err: unknown, delayMs: number): void;
  /** The list at the start of each (re)connection returned. */
  onList?(resource: string): void;
}

export type ChangeHandler<T> = (type: "add" | "update" | "delete", obj: T) => void;

export class ResilientInformer<T extends KubernetesObject> {
  private readonly inner;
  private stopped = true;
  private synced = false;
  private backoffMs: number;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly syncWaiters = new Set<() => void>();
  /** Lists made so far (the first one, then one per restart or 410). */
  lists = 0;
  restarts = 0;

  constructor(
    readonly resource: string,
    kc: KubeConfig,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    private readonly opts: {
      labelSelector?: string;
      hooks?: InformerHooks;
      minBackoffMs?: number;
      maxBackoffMs?: number;
      watch?: WatchBounds;
      /** Applied to each watched object before the cache keeps it (the list function does its own). */
      transform?: (o: T) => T;
    } = {},
  ) {
    this.backoffMs = opts.minBackoffMs ?? 500;
    const listAndMark = async () => {
      const result = await list();
      // makeInformer fills its cache from the list once this returns, within the same run of
      // microtasks: "synced" is announced after that, so a waiter finds the listed objects.
      setImmediate(() => {
        this.lists += 1;
        this.synced = true;
        this.backoffMs = this.opts.minBackoffMs ?? 500;
        this.opts.hooks?.onList?.(this.resource);
        for (const w of [...this.syncWaiters]) w();
      });
      return result;
    };
    const watch = new BoundedWatch(
      kc,
      opts.watch ?? DEFAULT_WATCH_BOUNDS,
      opts.transform as ((o: unknown) => unknown) | undefined,
    ) as unknown as Watch;
    this.inner = new ListWatch<T>(path, watch, listAndMark, false, opts.labelSelector);
    this.inner.on("error", (err: unknown) => this.restartLater(err));
  }

  onChange(handler: ChangeHandler<T>): void {
    this.inner.on("add", (o) => handler("add", o));
    this.inner.on("update", (o) => handler("update", o));
    this.inner.on("delete", (o) => handler("delete", o));
  }

  get(name: string, namespace?: string): T | undefined {
    return this.inner.get(name, namespace);
  }

  list(namespace?: string): T[] {
    return [...this.inner.list(namespace)];
  }

  /** The resourceVersion the next watch starts from ("" before a list or after a 410). */
  resourceVersion(): string {
    return (this.inner as unknown as { latestResourceVersion(): string }).latestResourceVersion();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.inner.start();
    } catch (err) {
      this.restartLater(err);
    }
  }

  /** Resolves when the first list has landed; rejects if it has not after `timeoutMs`. */
  waitForSync(timeoutMs: number): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.syncWaiters.delete(synced);
        reject(new Error(`the ${this.resource} informer did not sync within ${timeoutMs} ms`));
      }, timeoutMs);
      const synced = () => {
        clearTimeout(timer);
        this.syncWaiters.delete(synced);
        resolve();
      };
      this.syncWaiters.add(synced);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    await this.inner.stop();
  }

  private restartLater(err: unknown): void {
    if (this.stopped || this.restartTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    this.restarts += 1;
    this.opts.hooks?.onRestart?.(this.resource, err, delay);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (!this.stopped) void this.start();
    }, delay);
  }
}
