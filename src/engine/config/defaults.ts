import type { Arch } from "./schema.js";

export { DEFAULTS } from "./fields.js";

/** Maps Node's or uname's name of a CPU architecture to the image's; undefined when no image exists for it. */
export function hostArchToArch(hostArch: string): Arch | undefined {
  switch (hostArch) {
    case "x64":
    case "x86_64":
    case "amd64":
      return "amd64";
    case "arm64":
    case "aarch64":
      return "arm64";
    default:
      return undefined;
  }
}
