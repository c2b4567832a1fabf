/** A test file's environment changes, undone: the variables' values now, and a function that puts them back. */
export function saveEnv(names: readonly string[]): () => void {
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  return () => {
    for (const [n, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[n];
      else process.env[n] = v;
    }
  };
}
