// The key broker as the server sees it (README.md, "Key release"): a source of single-use nonces
// and of WrappedKeys for evidence. Either the embedded broker (host/broker createBroker, in this
// process: development only, since it holds the data keys) or a remote one (BrokerClient over
// HTTP). UNTRUSTED side: it carries public nonces, public evidence and WrappedKey ciphertext.
import { BrokerClient, type Broker } from "../broker/index.ts";

export interface KeyBroker {
  /** Where it is, for messages: "embedded" or its URL. */
  readonly where: string;
  nonce(): Promise<Uint8Array>;
  /** The WrappedKey (SPEC §10) for the loader the evidence names, or the broker's refusal. */
  release(keyIdHex: string, evidence: Uint8Array, nonce: Uint8Array): Promise<Uint8Array>;
}

export type BrokerLike = KeyBroker | Broker | BrokerClient | string;

const isEmbedded = (b: unknown): b is Broker => typeof (b as Broker)?.issueNonce === "function";

/** A KeyBroker for a URL, an embedded broker, a BrokerClient or a KeyBroker. */
export function keyBrokerOf(b: BrokerLike): KeyBroker {
  if (typeof b === "string") return keyBrokerOf(new BrokerClient(b));
  if (isEmbedded(b)) {
    return {
      where: "embedded",
      nonce: async () => b.issueNonce(),
      release: (keyIdHex, evidence, nonce) => b.release({ keyId: keyIdHex, evidence, nonce }),
    };
  }
  if (b instanceof BrokerClient) {
    return { where: b.url, nonce: () => b.nonce(), release: (k, e, n) => b.release(k, e, n) };
  }
  if (typeof (b as KeyBroker)?.nonce === "function" && typeof (b as KeyBroker)?.release === "function") return b as KeyBroker;
  throw new TypeError("broker: pass a URL, an embedded broker (createBroker), a BrokerClient or a KeyBroker");
}
