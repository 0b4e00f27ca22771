// `veil broker` commands (host/broker/main.ts): key files, add-key, verify-log, policy files.
import { readFileSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { brokerMain, readPolicyFile } from "../../host/broker/main.ts";
import { FileKeyStore } from "../../host/broker/index.ts";
import { contains, hex, rand, tmp } from "./helpers.ts";

const t = tmp("veil-broker-cli-");
afterAll(() => t.cleanup());

describe("veil broker", () => {
  it("gen-key, add-key and verify-log", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      const keyFile = join(t.dir, "broker.key");
      expect(await brokerMain(["gen-key", "--out", keyFile])).toBe(0);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const dataKey = rand(32);
      const dataKeyFile = join(t.dir, "data.key");
      writeFileSync(dataKeyFile, dataKey, { mode: 0o600 });
      const keyId = hex(rand(16));
      const dir = join(t.dir, "state");
      expect(await brokerMain(["add-key", "--dir", dir, "--broker-key-file", keyFile, "--key-id", keyId, "--data-key-file", dataKeyFile])).toBe(0);
      expect(contains(readFileSync(join(dir, "keys.json")), dataKey)).toBe(false);
      const s = FileKeyStore.open(join(dir, "keys.json"), new Uint8Array(readFileSync(keyFile)));
      expect(s.get(Buffer.from(keyId, "hex"))).toEqual(dataKey);
      s.close();
      expect(await brokerMain(["verify-log", "--dir", dir])).toBe(0);
      expect(log.mock.calls.at(-1)![0]).toMatch(/1 entries, chain intact/);
      appendFileSync(join(dir, "audit.log"), "{}\n");
      expect(await brokerMain(["verify-log", "--dir", dir])).toBe(1);
      expect(log.mock.calls.at(-1)![0]).toMatch(/BROKEN at line 2/);
      expect(contains(Buffer.from(log.mock.calls.flat().join("\n")), dataKey)).toBe(false);
    } finally {
      log.mockRestore();
    }
  });

  it("reads a policy file strictly", () => {
    const p = join(t.dir, "policy.json");
    const m = hex(rand(32));
    writeFileSync(p, JSON.stringify({ acceptedMeasurements: [m], acceptedWorkerCodeHashes: [], acceptedTrustConfigHashes: [], trustedPlatformKeys: [] }));
    expect(readPolicyFile(p)).toMatchObject({ acceptedMeasurements: [m], allowUnverifiedQuote: false, skip: [] });
    writeFileSync(p, JSON.stringify({ acceptedMeasurement: [m] }));
    expect(() => readPolicyFile(p)).toThrow(/unknown field/);
    writeFileSync(p, JSON.stringify({ skip: ["signature"] }));
    expect(() => readPolicyFile(p)).toThrow(/unknown skip/);
    writeFileSync(p, JSON.stringify({ allowUnverifiedQuote: "true" }));
    expect(() => readPolicyFile(p)).toThrow(/boolean/);
  });
});
