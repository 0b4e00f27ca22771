// Trusted: linked into the loader. Replaces asc's default `env.abort` import so the
// module imports only the capabilities in loader.wit. The loader's code paths never
// reach it (no managed allocations, no assertions); if one ever did, trapping is the
// only safe answer, since no state can be trusted after a broken invariant.
export function loaderAbort(
  message: usize,
  fileName: usize,
  line: u32,
  column: u32,
): void {
  unreachable();
}
