/** The engine's version, recorded in snapshot manifests. */
export const ENGINE_VERSION = "0.1.0";
