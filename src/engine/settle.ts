/**
 * Every result once all have settled, or the first error (in argument order)
 * once all have settled: nothing started is still running when the caller
 * cleans up after a failure, unlike Promise.all.
 */
export async function settledAll<T extends readonly unknown[]>(
  promises: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === "rejected") throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
