// Test build only: exports for the hash primitives (owned by the hash work).
