/**
 * Reads an agent's boot report from its Pod: GET http://<podIP>:<port>/status.
 * No RBAC at all (the agent's Pod has no service account token); the report
 * holds no secret. Undefined when the agent cannot be reached yet.
 */
import { AGENT_PATHS, AgentReport } from "../agent/contract.js";

export type ReportFetcher = (podIP: string, port: number) => Promise<AgentReport | undefined>;

export function httpReportFetcher(timeoutMs: number): ReportFetcher {
  return async (podIP, port) => {
    const host = podIP.includes(":") ? `[${podIP}]` : podIP;
    try {
      const res = await fetch(`http://${host}:${port}${AGENT_PATHS.status}`, {
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) return undefined;
      const parsed = AgentReport.safeParse(await res.json());
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  };
}
