// Exceptions thrown by application handlers: reported as uncaught (the
// page's error handlers see them) without stopping the SDK's own work.

export function rethrowLater(e: unknown): void {
  const report = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof report === "function") report(e);
  else globalThis.setTimeout(() => { throw e; }, 0);
}
