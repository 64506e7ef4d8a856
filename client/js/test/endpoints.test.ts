import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeCertHash, resolveEndpoints } from "../src/endpoints.js";

describe("resolveEndpoints", () => {
  it("derives both transports from an https URL", () => {
    assert.deepEqual(resolveEndpoints("https://127.0.0.1:4433"), {
      webTransport: "https://127.0.0.1:4433/wt",
      webSocket: "wss://127.0.0.1:4433/ws",
      certHash: "https://127.0.0.1:4433/certhash",
    });
    assert.equal(resolveEndpoints("https://h:4433/custom?x=1").webTransport, "https://h:4433/custom?x=1");
  });

  it("uses WebSocket only for http, ws and wss URLs", () => {
    assert.deepEqual(resolveEndpoints("http://127.0.0.1:8080"), {
      webSocket: "ws://127.0.0.1:8080/ws",
      certHash: "http://127.0.0.1:8080/certhash",
    });
    assert.deepEqual(resolveEndpoints("ws://h:8080/ws"), { webSocket: "ws://h:8080/ws", certHash: "http://h:8080/certhash" });
    assert.deepEqual(resolveEndpoints("wss://h/sock"), { webSocket: "wss://h/sock", certHash: "https://h/certhash" });
  });

  it("takes the overrides, fetching the hash from the WebSocket's HTTP origin", () => {
    const ep = resolveEndpoints("https://127.0.0.1:4433", {
      webSocketUrl: "ws://127.0.0.1:8080/ws",
      webTransportUrl: "https://127.0.0.1:4433/other",
    });
    assert.deepEqual(ep, {
      webTransport: "https://127.0.0.1:4433/other",
      webSocket: "ws://127.0.0.1:8080/ws",
      certHash: "http://127.0.0.1:8080/certhash",
    });
    assert.equal(resolveEndpoints("https://h", { certHashUrl: "http://x/hash" }).certHash, "http://x/hash");
  });

  it("rejects what it cannot use", () => {
    assert.throws(() => resolveEndpoints("ftp://h"), TypeError);
    assert.throws(() => resolveEndpoints("not a url"), TypeError);
    assert.throws(() => resolveEndpoints("https://h", { webTransportUrl: "http://h/wt" }), TypeError);
    assert.throws(() => resolveEndpoints("https://h", { webSocketUrl: "ftp://h/ws" }), TypeError);
  });
});

describe("decodeCertHash", () => {
  const hash = Buffer.alloc(32, 0xfb);
  it("accepts std and url-safe base64, padded or not", () => {
    for (const s of [hash.toString("base64"), hash.toString("base64url"), hash.toString("base64").replace(/=+$/, ""), ` ${hash.toString("base64")}\n`]) {
      assert.deepEqual(decodeCertHash(s), new Uint8Array(hash));
    }
  });
  it("rejects anything but 32 bytes of base64", () => {
    assert.throws(() => decodeCertHash("!!!"), TypeError);
    assert.throws(() => decodeCertHash(Buffer.alloc(20).toString("base64")), /20 bytes/);
  });
});
