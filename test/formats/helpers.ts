// Shared by the host format tests: catch a VeilFormatError, and the SPEC §1.4 name alphabet.
import fc from "fast-check";
import { VeilFormatError } from "../../host/formats/errors.ts";

/** The VeilFormatError `f` throws, or undefined when it returns; any other error is rethrown. */
export function errOf(f: () => unknown): VeilFormatError | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof VeilFormatError) return e;
    throw e;
  }
  return undefined;
}

/** The error code `f` throws, or "OK". */
export const codeOf = (f: () => unknown): string => errOf(f)?.code ?? "OK";

/** SPEC §1.4 names: a letter or digit, then up to `maxTail` name bytes. */
export const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/";
export const arbNameOf = (maxTail: number): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom(...nameChars.slice(0, 62)), fc.array(fc.constantFrom(...nameChars), { maxLength: maxTail }))
    .map(([h, t]) => h + t.join(""));
