// The WebTransport transport: one bidirectional stream, the control stream,
// opened by the client; both sides write length-prefixed frames on it as a
// byte stream.

import { CLOSE_ABNORMAL, trimReason } from "./codes.js";
import { ProtocolError } from "./codec.js";
import { fetchCertHash } from "./endpoints.js";
import { FrameSplitter } from "./framing.js";
import type { Transport, TransportHandlers } from "./transport.js";

/** How long to wait for the session's close code after the server ended the control stream. */
const FIN_GRACE_MS = 2000;

/** The certificate hash: bytes, "auto" (fetch it from url), or none. */
export type CertHashSource = { bytes: Uint8Array<ArrayBuffer> } | { url: string } | undefined;

function describe(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

export class WebTransportTransport implements Transport {
  readonly name = "webtransport" as const;
  private wt: WebTransport | undefined;
  private writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  private done = false;
  private finTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly url: string,
    private readonly hash: CertHashSource,
    private readonly h: TransportHandlers,
  ) {
    void this.start();
  }

  private async start(): Promise<void> {
    let stage = "certificate hash";
    try {
      let hashes: WebTransportHash[] | undefined;
      if (this.hash && "url" in this.hash) {
        hashes = [{ algorithm: "sha-256", value: await fetchCertHash(this.hash.url, this.abort.signal) }];
      } else if (this.hash) {
        hashes = [{ algorithm: "sha-256", value: this.hash.bytes }];
      }
      if (this.done) return;
      stage = "connect";
      const wt = new WebTransport(this.url, hashes ? { serverCertificateHashes: hashes } : {});
      this.wt = wt;
      wt.closed.then(
        (info) => this.end(info.closeCode ?? 0, info.reason ?? ""),
        (e) => this.end(0, `webtransport: ${describe(e)}`),
      );
      await wt.ready;
      if (this.done) return;
      stage = "open control stream";
      const stream = await wt.createBidirectionalStream();
      if (this.done) return;
      this.writer = stream.writable.getWriter();
      this.writer.closed.catch(() => {});
      void this.read(stream.readable.getReader());
      this.h.open();
    } catch (e) {
      this.fail(0, `webtransport ${stage}: ${describe(e)}`);
    }
  }

  private async read(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const splitter = new FrameSplitter();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (this.done) return;
        if (done) {
          // The server ends the control stream after Disconnect, then closes
          // the session with the code; without a Disconnect, wait a moment
          // for that code.
          this.finTimer = setTimeout(() => this.fail(CLOSE_ABNORMAL, "control stream ended"), FIN_GRACE_MS);
          return;
        }
        let bodies: Uint8Array[];
        try {
          bodies = splitter.push(value);
        } catch (e) {
          const pe = e as ProtocolError;
          this.fail(pe.code, `bad data from the server: ${pe.message}`);
          return;
        }
        for (const b of bodies) {
          if (this.done) return;
          this.h.frame(b);
        }
      }
    } catch (e) {
      // The stream failed, normally because the session closed: closed
      // reports the code. Otherwise give up with this error.
      if (this.done) return;
      const wt = this.wt;
      if (wt) await wt.closed.then(() => {}, () => {});
      this.fail(0, `webtransport: ${describe(e)}`);
    }
  }

  send(frame: Uint8Array): void {
    if (this.done || !this.writer) return;
    this.writer.write(frame).catch((e: unknown) => this.fail(0, `webtransport write: ${describe(e)}`));
  }

  close(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.shut(code, reason);
  }

  private shut(code: number, reason: string): void {
    if (this.finTimer !== undefined) clearTimeout(this.finTimer);
    this.abort.abort();
    const code32 = Number.isInteger(code) && code >= 0 && code <= 0xffffffff ? code : 0;
    try {
      // Closing the session (not FIN-ing the stream, which the server takes
      // for a lost connection) tells the server the code.
      this.wt?.close({ closeCode: code32, reason: trimReason(reason) });
    } catch {
      // already closed
    }
  }

  /** Gives up on the session: close it with code and report. */
  private fail(code: number, reason: string): void {
    if (this.done) return;
    this.shut(code, reason);
    this.end(code, reason);
  }

  private end(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    if (this.finTimer !== undefined) clearTimeout(this.finTimer);
    this.abort.abort();
    this.h.close(code, reason);
  }
}
