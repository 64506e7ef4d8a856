// Close codes (protocols/codes.go) and what they tell a client to do.

export const CLOSE_NORMAL = 1000;
export const CLOSE_ABNORMAL = 1006;
export const CODE_GOING_AWAY = 3000;
export const CODE_HEARTBEAT_TIMEOUT = 3002;
export const CODE_INTERNAL = 3003;
export const CODE_BAD_PROTOCOL = 3504;

/** Error frame code: the session is not subscribed to the channel. */
export const ERR_NOT_SUBSCRIBED = 105;
export const ERR_ALREADY_SUBSCRIBED = 104;
export const ERR_PAYLOAD_TOO_LARGE = 106;

/**
 * Whether a client may reconnect after a close code: no for 3500–3999
 * (Switchyard, terminal) and 4500–4999 (application, terminal); yes for
 * everything else, including the transports' own codes below 3000 and a
 * connection lost without a code.
 */
export function reconnectAllowed(code: number): boolean {
  if (code >= 3500 && code < 4000) return false;
  if (code >= 4500 && code <= 4999) return false;
  return true;
}

/** Cuts a close reason to at most max UTF-8 bytes, on a character boundary. */
export function trimReason(reason: string, max = 120): string {
  const b = new TextEncoder().encode(reason);
  if (b.length <= max) return reason;
  let i = max;
  while (i > 0 && (b[i]! & 0xc0) === 0x80) i--;
  return new TextDecoder().decode(b.subarray(0, i));
}
