export const ARCHES = ["amd64", "arm64"] as const;
export type Arch = (typeof ARCHES)[number];
export const SNAPSHOT_MODES = ["auto", "never", "required"] as const;
export const STRATEGIES = ["auto", "template", "mapped-ram", "stream"] as const;
export const HOST_SHARE_MODES = ["cwd", "root", "path", "none"] as const;
/** The guest's user-facing services, in the order they are reported. */
export const SERVICE_NAMES = ["dashboard", "backend", "minio", "inbucket", "mockOauth"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Inclusive ranges of the numeric settings. */
export const LIMITS = {
  ramMiB: [512, 262_144],
  cpus: [1, 256],
  portPrefix: [10, 99],
  port: [1, 65_535],
  timeoutSec: [1, 3600],
  stopGraceSec: [0, 3600],
} as const satisfies Record<string, readonly [number, number]>;

/**
 * The port each service listens on inside the guest: the app's two from the
 * prefix, MinIO's and Inbucket's fixed ones, and mock OAuth on its host port
 * (so that its issuer URL, http://localhost:<port>, is the same from the
 * browser and from the backend in the guest).
 */
export function guestPorts(portPrefix: number, mockOauthHostPort: number): Record<ServiceName, number> {
  return {
    dashboard: Number(`${portPrefix}01`),
    backend: Number(`${portPrefix}02`),
    minio: 9090,
    inbucket: 9001,
    mockOauth: mockOauthHostPort,
  };
}

/** A string with no leading/trailing blanks and no control characters. */
export function isCleanString(s: string): boolean {
  // eslint-disable-next-line no-control-regex
  return s.length > 0 && s.trim() === s && !/[\u0000-\u001f\u007f]/.test(s);
}
