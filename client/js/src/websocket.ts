// The WebSocket transport: binary messages, each holding one or more whole
// length-prefixed frames. The client sends one frame per message; the
// server batches many into one.

import { CLOSE_ABNORMAL, CLOSE_NORMAL, trimReason } from "./codes.js";
import { ProtocolError } from "./codec.js";
import { splitMessage } from "./framing.js";
import type { Transport, TransportHandlers } from "./transport.js";

/** Bytes buffered (bufferedAmount) above which the client holds requests back. */
export const HIGH_WATER = 1 << 20;

/** A browser accepts close codes 1000 and 3000–4999 from scripts. */
function closeCode(code: number): number {
  return code === CLOSE_NORMAL || (code >= 3000 && code <= 4999) ? code : CLOSE_NORMAL;
}

export class WebSocketTransport implements Transport {
  readonly name = "websocket" as const;
  private ws: WebSocket | undefined;
  private done = false;

  constructor(url: string, private readonly h: TransportHandlers) {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      queueMicrotask(() => this.end(CLOSE_ABNORMAL, `websocket: ${String(e)}`));
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      if (!this.done) this.h.open();
    };
    ws.onmessage = (ev: MessageEvent) => this.receive(ev.data);
    ws.onclose = (ev: CloseEvent) => {
      const reason = ev.reason || (ev.code === CLOSE_ABNORMAL ? "websocket connection lost or refused" : "");
      this.end(ev.code, reason);
    };
    ws.onerror = () => {}; // a close event follows, with the code
  }

  private receive(data: unknown): void {
    if (this.done) return;
    if (!(data instanceof ArrayBuffer)) {
      this.fail(new ProtocolError("text message from the server"));
      return;
    }
    let bodies: Uint8Array[];
    try {
      bodies = splitMessage(new Uint8Array(data));
    } catch (e) {
      this.fail(e as ProtocolError);
      return;
    }
    for (const b of bodies) {
      if (this.done) return;
      this.h.frame(b);
    }
  }

  send(frame: Uint8Array): void {
    if (this.done || this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(frame as Uint8Array<ArrayBuffer>);
  }

  writable(): boolean {
    return (this.ws?.bufferedAmount ?? 0) < HIGH_WATER;
  }

  close(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.shut(code, reason);
  }

  private shut(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(closeCode(code), trimReason(reason));
    } catch {
      // already closed
    }
  }

  /** Bad data from the server: close with its code and report it. */
  private fail(e: ProtocolError): void {
    const reason = trimReason(`bad data from the server: ${e.message}`);
    this.shut(e.code, reason);
    this.end(e.code, reason);
  }

  private end(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.h.close(code, reason);
  }
}
