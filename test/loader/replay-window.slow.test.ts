// SPEC §8.2 at the edge of the window (slow: 16,385 requests; npm run test:slow). The loader
// remembers the enc of the last REPLAY_WINDOW = 16384 requests it opened: a replay inside the
// window is REPLAY; one older than the window is not detected by the loader and is served again.
// (bounds.test.ts checks the window after 10,000 requests in every run.)
import { expect, it } from "vitest";
import { F, World, expectCode, expectNoTraps, fastSeal, tensorProgram, tensorRequest, type FastSealed } from "./fixture.ts";

expectNoTraps();

it("a request 16,384 requests old is still a replay; one 16,385 requests old is served again", async () => {
  const w = new World();
  const p = await tensorProgram();
  const h = w.ready(p);
  w.acc.keepRuns = false;
  const inner = F.encodeInnerRequest(tensorRequest([5]));
  const WINDOW = F.LIMITS.REPLAY_WINDOW;
  const sent: FastSealed[] = [];
  let mem = 0;
  for (let i = 0; i <= WINDOW; i++) {
    const s = fastSeal(w.rb, p.digest, inner);
    w.L.infer(h, s.bytes);
    if (i < 2) sent.push(s);
    if (i === 0) mem = w.L.memoryBytes();
    if (w.acc.log.length > 1000) w.acc.log.length = 0;
  }
  // 16,385 requests opened: the first fell out of the window, the second is its oldest entry.
  expectCode(() => w.L.infer(h, sent[1].bytes), "REPLAY", 0x0705);
  const again = w.L.infer(h, sent[0].bytes);
  expect(F.decodeInnerResponse(sent[0].open(again)).kind).toBe(1);
  // Serving it again put it back in the window (evicting the second).
  expectCode(() => w.L.infer(h, sent[0].bytes), "REPLAY", 0x0705);
  expect(F.decodeInnerResponse(sent[1].open(w.L.infer(h, sent[1].bytes))).kind).toBe(1);
  expect(w.L.memoryBytes()).toBe(mem);
}, 300_000);
