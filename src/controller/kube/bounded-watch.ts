/**
 * client-node's Watch with the bounds client-go puts on a watch and
 * client-node does not: the server ends each watch after `timeoutSeconds`
 * (the informer then watches again from the last resourceVersion, no
 * relist), bookmarks keep that resourceVersion fresh, and a watch that says
 * nothing at all for longer than the server's own timeout plus a grace is
 * taken for a dead connection (a half-open TCP socket, a hung server) and
 * ended from this side. Without that, TCP keepalive notices a half-open
 * connection only after many minutes, and the cache is stale all along.
 */
import { Watch, type KubeConfig } from "@kubernetes/client-node";

export interface WatchBounds {
  /** What the server is asked for: it closes the watch after this many seconds. */
  timeoutSec: number;
  /** How much longer than that a silent watch is given before it is ended here. */
  graceMs: number;
}

export const DEFAULT_WATCH_BOUNDS: WatchBounds = { timeoutSec: 300, graceMs: 30_000 };

export class SilentWatchError extends Error {
  constructor(path: string, ms: number) {
    super(`the watch of ${path} said nothing for ${ms} ms: ending it as a dead connection`);
    this.name = "SilentWatchError";
  }
}

type Callback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;
type Done = (err: unknown) => void;

/** The shape ListWatch uses of a Watch. */
export class BoundedWatch {
  private readonly inner: Watch;

  constructor(
    kc: KubeConfig,
    private readonly bounds: WatchBounds = DEFAULT_WATCH_BOUNDS,
    /** Applied to each object before the cache sees it (drops a Secret's data). */
    private readonly transform: (o: unknown) => unknown = (o) => o,
  ) {
    this.inner = new Watch(kc);
  }

  async watch(
    path: string,
    queryParams: Record<string, unknown>,
    callback: Callback,
    done: Done,
  ): Promise<AbortController> {
    const silenceMs = this.bounds.timeoutSec * 1000 + this.bounds.graceMs;
    let ended = false;
    // Filled in once the server answers; the silence timer may fire before that.
    const live: { request?: AbortController } = {};
    let timer: ReturnType<typeof setTimeout> | undefined;
    const end = (err: unknown) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      done(err);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        live.request?.abort();
        end(new SilentWatchError(path, silenceMs));
      }, silenceMs);
    };
    arm();
    const request = await this.inner.watch(
      path,
      { ...queryParams, timeoutSeconds: this.bounds.timeoutSec, allowWatchBookmarks: true },
      (phase, obj, watchObj) => {
        if (ended) return;
        arm();
        callback(phase, this.transform(obj), watchObj);
      },
      end,
    );
    live.request = request;
    // Silent before the server even answered: the request could not be aborted until now.
    if (ended) request.abort();
    return request;
  }
}
