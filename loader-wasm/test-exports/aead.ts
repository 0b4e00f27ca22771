// Test build only: exports for the aead primitives (owned by the aead work).
