// The WebTransport transport: one bidirectional stream, the control stream,
// opened by the client; both sides write length-prefixed frames on it as a
// byte stream. The server also opens one unidirectional stream per
// subscription (alias, then frames) when the client asked for them, and
// both sides send datagrams for volatile channels.

import { CLOSE_ABNORMAL, trimReason } from "./codes.js";
import { CODE_BAD_FRAME, ProtocolError } from "./codec.js";
import { StreamHeader } from "./datagram.js";
import { fetchCertHash } from "./endpoints.js";
import { FrameSplitter } from "./framing.js";
import { HIGH_WATER } from "./websocket.js";
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
  private datagrams: WritableStreamDefaultWriter<Uint8Array> | undefined;
  private done = false;
  private queued = 0; // bytes written whose write has not completed
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
      void this.readDatagrams(wt);
      void this.acceptStreams(wt);
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

  /** Delivers the server's datagrams until the session ends. */
  private async readDatagrams(wt: WebTransport): Promise<void> {
    try {
      const reader = (wt.datagrams.readable as ReadableStream<Uint8Array>).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.done) return;
        this.h.datagram(value);
      }
    } catch {
      // the session ended: closed reports it
    }
  }

  /** Reads every unidirectional stream the server opens: one per subscription. */
  private async acceptStreams(wt: WebTransport): Promise<void> {
    try {
      const streams = (wt.incomingUnidirectionalStreams as ReadableStream<ReadableStream<Uint8Array>>).getReader();
      for (;;) {
        const { value, done } = await streams.read();
        if (done || this.done) return;
        void this.readStream(value.getReader());
      }
    } catch {
      // the session ended
    }
  }

  /** Reads one subscription's stream: its alias, then length-prefixed frames. */
  private async readStream(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
    const header = new StreamHeader();
    const splitter = new FrameSplitter();
    let alias = -1;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.done) return;
        let chunk = value;
        let bodies: Uint8Array[];
        try {
          if (alias < 0) {
            const h = header.push(chunk);
            if (h === undefined) continue;
            alias = h.alias;
            chunk = h.rest;
          }
          bodies = splitter.push(chunk);
        } catch (e) {
          const code = e instanceof ProtocolError ? e.code : CODE_BAD_FRAME;
          this.fail(code, `bad data from the server on a subscription stream: ${describe(e)}`);
          return;
        }
        for (const b of bodies) {
          if (this.done) return;
          this.h.streamFrame(alias, b);
        }
      }
    } catch {
      // the stream was reset or the session ended
    } finally {
      if (this.done) reader.cancel().catch(() => {});
    }
  }

  sendDatagram(datagram: Uint8Array): boolean {
    const wt = this.wt;
    if (this.done || !this.writer || !wt) return false;
    const max = wt.datagrams.maxDatagramSize;
    if (typeof max === "number" && max > 0 && datagram.length > max) return false;
    if (!this.datagrams) {
      this.datagrams = (wt.datagrams.writable as WritableStream<Uint8Array>).getWriter();
      this.datagrams.closed.catch(() => {});
    }
    // Unreliable by nature: a datagram the browser cannot send is lost
    // like one lost on the way.
    this.datagrams.write(datagram).catch(() => {});
    return true;
  }

  send(frame: Uint8Array): void {
    if (this.done || !this.writer) return;
    this.queued += frame.length;
    this.writer.write(frame).then(
      () => (this.queued -= frame.length),
      (e: unknown) => this.fail(0, `webtransport write: ${describe(e)}`),
    );
  }

  writable(): boolean {
    return this.queued < HIGH_WATER;
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
