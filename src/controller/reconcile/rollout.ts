/**
 * Replacing Pods because the controller's Pod template changed (a helm
 * upgrade of an agent value: image, memory overhead, grace period), not
 * because an Emulator's spec did. Each replacement stops a running VM, so
 * they go a few at a time, like a Deployment's maxUnavailable: a stale Pod
 * is replaced only while fewer than `maxUnavailable` replacements are still
 * coming up, and a replacement that never becomes Ready holds the rollout
 * there instead of breaking every emulator. A change to the Emulator's own
 * spec is the user's request and is applied at once, outside this budget.
 *
 * Kept in the leader's memory: bounded by maxUnavailable (an entry goes when
 * its Pod of the new template is Ready or its Emulator is gone). After a
 * failover the new leader starts with an empty budget, so for one round up to
 * twice maxUnavailable may be coming up at once.
 */
export class TemplateRollout {
  private readonly replacing = new Set<string>();

  constructor(private readonly maxUnavailable: number) {}

  /** Whether the Emulator `key` may have its stale Pod replaced now; if so it holds a slot. */
  admit(key: string): boolean {
    if (this.replacing.has(key)) return true;
    if (this.replacing.size >= this.maxUnavailable) return false;
    this.replacing.add(key);
    return true;
  }

  /** The Emulator's Pod of the current template is Ready, or the Emulator is gone: its slot is free. */
  settle(key: string): void {
    this.replacing.delete(key);
  }

  get inFlight(): number {
    return this.replacing.size;
  }
}
