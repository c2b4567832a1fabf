/**
 * The Action's inputs, validated at the edge: the Action's own inputs with
 * zod here, the emulator settings by the engine's loadConfig (named by their
 * input names). Every problem of both ends up in one ConfigError, each line
 * naming the input, its value, the rule and a valid example.
 */
import { z } from "zod";
import { ConfigError, loadConfig, type ConfigOverrides, type FieldPath } from "../engine/index.js";
import { SUFFIX_PATTERN } from "./cache-key.js";

export const CACHE_MODES = ["actions", "local", "none"] as const;
export const SAVE_ON = ["default-branch", "always", "never"] as const;
export const ENABLE_KVM = ["auto", "true", "false"] as const;
export const CAPTURE = ["when-saved", "always"] as const;

/** Where the base image comes from. */
export type ImageSpec =
  | { kind: "default" }
  | { kind: "path"; path: string }
  | { kind: "url"; url: string }
  | { kind: "tag"; tag: string };

export interface ActionInputs {
  image: ImageSpec;
  /** Expected sha256 of a downloaded image (lower-case hex). */
  imageSha256?: string | undefined;
  /** "auto", or the path of a qemu-system binary. */
  qemu: string;
  cache: (typeof CACHE_MODES)[number];
  /** cache: local only; undefined = the engine's default home. */
  cacheDir?: string | undefined;
  saveOn: (typeof SAVE_ON)[number];
  /** The default-branch input: names the default branch when the event payload does not. */
  defaultBranch?: string | undefined;
  /** cache-key-suffix: salts the Actions cache key. */
  cacheKeySuffix?: string | undefined;
  /**
   * enable-kvm: auto (make /dev/kvm usable for this boot only when it is there and
   * the runner may become root), true (the same, and fail when it cannot), false
   * (never touch /dev/kvm: TCG unless it is already usable).
   */
  enableKvm: (typeof ENABLE_KVM)[number];
  /** capture: when-saved (capture only a snapshot that is kept: saved, or in cache-dir) or always. */
  capture: (typeof CAPTURE)[number];
  /** token: sent as a bearer token to download the image (private release assets). Masked. */
  token?: string | undefined;
  /** The resume-timeout input was given (else the Action scales the default with the accelerator). */
  resumeTimeoutGiven: boolean;
  /** The job's status as the runner evaluates `${{ job.status }}` (success, failure, cancelled). */
  jobStatus: string;
  /** Emulator settings given as inputs, for loadConfig. */
  overrides: ConfigOverrides;
}

/** The input that sets each engine field (for loadConfig's messages). */
export const OVERRIDE_NAMES: Partial<Record<FieldPath, string>> = {
  image: "image",
  arch: "arch",
  ramMiB: "ram",
  cpus: "cpus",
  portPrefix: "port-prefix",
  "ports.dashboard": "dashboard-port",
  "ports.backend": "backend-port",
  "ports.minio": "minio-port",
  "ports.inbucket": "inbucket-port",
  "ports.mockOauth": "mock-oauth-port",
  bindAddress: "bind-address",
  snapshot: "snapshot",
  rotation: "rotation",
  readyTimeoutSec: "ready-timeout",
  snapshotReadyTimeoutSec: "resume-timeout",
  "hostShare.mode": "host-share",
  "hostShare.path": "host-share",
  "hostShare.readOnly": "host-share-read-only",
  qemuBinary: "qemu",
  home: "cache-dir",
};

/** Inputs passed straight to the engine as string overrides (it parses and checks them). */
const ENGINE_INPUTS: ReadonlyArray<readonly [string, keyof ConfigOverrides | `ports.${string}`]> = [
  ["arch", "arch"],
  ["ram", "ramMiB"],
  ["cpus", "cpus"],
  ["port-prefix", "portPrefix"],
  ["dashboard-port", "ports.dashboard"],
  ["backend-port", "ports.backend"],
  ["minio-port", "ports.minio"],
  ["inbucket-port", "ports.inbucket"],
  ["mock-oauth-port", "ports.mockOauth"],
  ["bind-address", "bindAddress"],
  ["snapshot", "snapshot"],
  ["rotation", "rotation"],
  ["ready-timeout", "readyTimeoutSec"],
  ["resume-timeout", "snapshotReadyTimeoutSec"],
];

const SOURCE = "action inputs";
const HINT = "fix the `with:` block of the hexclave/emulator-action step";
const isUrl = (s: string) => /^https?:\/\//i.test(s);
const looksLikePath = (s: string) =>
  /^(\/|\.\.?(\/|$)|~(\/|$))/.test(s) || s.includes("/") || /\.(qcow2|img)$/i.test(s);
const TAG = /^[\w.+-]+$/;
// eslint-disable-next-line no-control-regex
const clean = (s: string) => s.trim() === s && !/[\u0000-\u001f\u007f]/.test(s);

/** The Action's own inputs (not emulator settings), as raw strings from the workflow. */
const ActionSchema = z.object({
  image: z
    .string()
    .refine(clean, { message: "must not have leading/trailing blanks or control characters" })
    .refine((s) => s === "" || isUrl(s) || looksLikePath(s) || TAG.test(s), {
      message:
        "must be a path to stack-emulator-<arch>.qcow2, an http(s):// URL, or a release tag like emulator-v1.2.3",
    }),
  "image-sha256": z.string().refine((s) => s === "" || /^[0-9a-fA-F]{64}$/.test(s), {
    message: "must be 64 hex digits (a sha256)",
  }),
  qemu: z.string().refine((s) => s === "" || s === "auto" || (clean(s) && s.includes("/")), {
    message: "must be auto or the path of a qemu-system binary (or a wrapper script)",
  }),
  cache: z.enum(["", ...CACHE_MODES], { message: "must be one of actions, local, none" }),
  "cache-dir": z.string().refine(clean, { message: "must be a directory path without surrounding blanks" }),
  "save-on": z.enum(["", ...SAVE_ON], { message: "must be one of default-branch, always, never" }),
  "host-share": z
    .string()
    .refine(
      (s) =>
        s === "" || ["cwd", "root", "none"].includes(s.toLowerCase()) || /^(\/|\.\.?(\/|$)|~(\/|$))/.test(s),
      {
        message: "must be cwd, root (share /), none, or a directory path starting with /, ./, ../ or ~",
      },
    ),
  "host-share-read-only": z.enum(["", "true", "false"], { message: "must be true or false" }),
  "cache-key-suffix": z.string().refine((s) => s === "" || SUFFIX_PATTERN.test(s), {
    message: "must be 1-64 letters, digits, dots or underscores (no dashes)",
  }),
  "default-branch": z.string().refine((s) => s === "" || /^[^\s~^:?*[\\]+$/.test(s), {
    message: "must be a branch name (without refs/heads/)",
  }),
  "enable-kvm": z.enum(["", ...ENABLE_KVM], { message: "must be one of auto, true, false" }),
  capture: z.enum(["", ...CAPTURE], { message: "must be one of when-saved, always" }),
  // Never echoed: a bad token's problem names the rule, not the value (see readActionInputs).
  token: z.string().refine(clean, { message: "must not have surrounding blanks or control characters" }),
});

const EXAMPLES: Record<string, string> = {
  image: "./stack-emulator-amd64.qcow2",
  "image-sha256": "<64 hex digits>",
  qemu: "auto",
  cache: "actions",
  "cache-dir": "/var/cache/hexclave-emulator",
  "save-on": "default-branch",
  "host-share": "none",
  "host-share-read-only": "true",
  "cache-key-suffix": "v2",
  "default-branch": "main",
  "enable-kvm": "auto",
  capture: "when-saved",
  token: "${{ secrets.GITHUB_TOKEN }}",
};

/** Every input the Action reads (action.yml declares exactly these). */
export const INPUT_NAMES: readonly string[] = [
  ...Object.keys(EXAMPLES),
  ...ENGINE_INPUTS.map(([name]) => name),
  "job-status",
];

export interface ReadInputsOptions {
  /** The engine's environment variables apply beneath the inputs. */
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  homeDir: string;
  hostArch: string;
}

/** Reads and checks every input; throws one ConfigError listing every bad one. */
export function readActionInputs(get: (name: string) => string, opts: ReadInputsOptions): ActionInputs {
  const raw = Object.fromEntries(Object.keys(EXAMPLES).map((k) => [k, get(k)])) as Record<string, string>;
  const problems: string[] = [];
  const parsed = ActionSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      const shown = name === "token" ? "<redacted>" : JSON.stringify(raw[name]);
      problems.push(`${name}=${shown} (from ${SOURCE}): ${issue.message} (e.g. ${name}=${EXAMPLES[name]})`);
    }
  }

  // Rules across inputs (checked whatever else is wrong, so one error lists everything).
  const cache = raw.cache || "actions";
  if (raw["cache-dir"] && cache !== "local") {
    problems.push(
      `cache-dir=${JSON.stringify(raw["cache-dir"])} (from ${SOURCE}): is only used with cache: local (cache is "${cache}"); remove cache-dir or set cache: local`,
    );
  }
  const img = raw.image ?? "";
  if (img === "" && cache !== "local") {
    problems.push(
      `image="" (from ${SOURCE}): is required with cache: ${cache}: the emulator's own image directory is empty on a fresh runner; set image to a release tag (e.g. image: emulator-v1.4.0), an http(s):// URL or a path to stack-emulator-<arch>.qcow2 (or use cache: local with an image pulled into cache-dir)`,
    );
  }
  if (raw["cache-key-suffix"] && cache !== "actions") {
    problems.push(
      `cache-key-suffix=${JSON.stringify(raw["cache-key-suffix"])} (from ${SOURCE}): only salts the Actions cache key (cache is "${cache}"); remove it or set cache: actions`,
    );
  }
  if (raw["image-sha256"] && (img === "" || imageSpec(img).kind === "path")) {
    problems.push(
      `image-sha256 (from ${SOURCE}): is only used when image is a URL or a release tag to download (image is ${JSON.stringify(img)})`,
    );
  }

  const overrides: Record<string, unknown> = {};
  const ports: Record<string, string> = {};
  for (const [input, field] of ENGINE_INPUTS) {
    const value = get(input);
    if (value === "") continue;
    if (field.startsWith("ports.")) ports[field.slice("ports.".length)] = value;
    else overrides[field] = value;
  }
  if (Object.keys(ports).length > 0) overrides.ports = ports;
  // No share unless asked for (the workspace holds the checkout's token); a share is
  // read-only unless host-share-read-only is false. HEXCLAVE_EMULATOR_HOST_SHARE still
  // applies when the input is empty (and is reported as an environment override).
  const share = raw["host-share"] ?? "";
  const readOnly = (raw["host-share-read-only"] || "true") === "true";
  if (!problems.some((p) => p.startsWith("host-share="))) {
    const keyword = share.toLowerCase();
    if (share === "") {
      overrides.hostShare = opts.env.HEXCLAVE_EMULATOR_HOST_SHARE ? { readOnly } : { mode: "none" };
    } else if (keyword === "none") {
      overrides.hostShare = { mode: "none" };
    } else {
      overrides.hostShare = ["cwd", "root"].includes(keyword)
        ? { mode: keyword, readOnly }
        : { mode: "path", path: share, readOnly };
    }
  }
  const image = imageSpec(raw.image ?? "");
  if (image.kind === "path") overrides.image = image.path;
  const qemu = raw.qemu === "" ? "auto" : (raw.qemu ?? "auto");
  if (qemu !== "auto" && !problems.some((p) => p.startsWith("qemu="))) overrides.qemuBinary = qemu;
  const cacheDir = raw["cache-dir"] || undefined;
  if (cacheDir && raw.cache === "local") overrides.home = cacheDir;

  try {
    loadConfig({
      env: opts.env,
      overrides: overrides as ConfigOverrides,
      cwd: opts.cwd,
      homeDir: opts.homeDir,
      hostArch: opts.hostArch,
      overrideSource: SOURCE,
      overrideNames: OVERRIDE_NAMES,
    });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  if (problems.length > 0) throw new ConfigError([...new Set(problems)], HINT);

  const data = parsed.success ? parsed.data : undefined;
  if (!data) throw new ConfigError(problems, HINT); // unreachable: problems were reported above
  return {
    image,
    imageSha256: data["image-sha256"] ? data["image-sha256"].toLowerCase() : undefined,
    qemu,
    cache: data.cache || "actions",
    cacheDir,
    saveOn: data["save-on"] || "default-branch",
    defaultBranch: data["default-branch"] || undefined,
    cacheKeySuffix: data["cache-key-suffix"] || undefined,
    enableKvm: data["enable-kvm"] || "auto",
    capture: data.capture || "when-saved",
    token: data.token || undefined,
    resumeTimeoutGiven: get("resume-timeout") !== "",
    jobStatus: get("job-status"),
    overrides: overrides as ConfigOverrides,
  };
}

/** A path (has a slash, starts with ./ or ~, or names a .qcow2), an http(s) URL, or a release tag. */
export function imageSpec(raw: string): ImageSpec {
  if (raw === "") return { kind: "default" };
  if (isUrl(raw)) return { kind: "url", url: raw };
  if (looksLikePath(raw)) return { kind: "path", path: raw };
  return { kind: "tag", tag: raw };
}
