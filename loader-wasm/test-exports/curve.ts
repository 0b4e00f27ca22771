// Test build only: exports for the curve primitives (owned by the curve work).
