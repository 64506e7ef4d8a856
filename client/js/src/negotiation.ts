// Perfect negotiation (MDN, "Establishing a connection: The WebRTC perfect
// negotiation pattern") for one RTCPeerConnection: either side may start a
// negotiation at any time (a track or data channel added, an ICE restart),
// and when both send an offer at once ("glare") the impolite side ignores
// the other's offer while the polite side rolls its own back and answers.
// The room decides who is polite (the peer whose id sorts first).

/** The signals of one peer connection, as they travel (without to/from). */
export type Signal =
  | { type: "offer" | "answer"; sdp: string }
  | { type: "candidate"; candidate: RTCIceCandidateInit | null };

/**
 * Wires pc: negotiationneeded sends an offer, ICE candidates are sent as
 * they come (null at the end), a failed ICE connection restarts ICE.
 * Returns the function that applies the other side's signals. send is
 * called with what goes to the other side; fail with errors nobody awaits.
 */
export function negotiate(
  pc: RTCPeerConnection,
  polite: boolean,
  send: (s: Signal) => void,
  fail: (e: unknown) => void,
): (s: Signal) => Promise<void> {
  let makingOffer = false;
  let ignoreOffer = false;
  let isSettingRemoteAnswerPending = false;
  const describe = () => {
    const d = pc.localDescription!;
    send({ type: d.type as "offer" | "answer", sdp: d.sdp });
  };

  pc.onnegotiationneeded = async () => {
    try {
      makingOffer = true;
      await pc.setLocalDescription(); // an offer
      describe();
    } catch (e) {
      fail(e);
    } finally {
      makingOffer = false;
    }
  };
  pc.onicecandidate = (e) => send({ type: "candidate", candidate: e.candidate && e.candidate.toJSON() });
  pc.oniceconnectionstatechange = () => {
    if (pc.iceConnectionState === "failed") pc.restartIce();
  };

  return async (s) => {
    try {
      if (s.type === "candidate") {
        // Whether it belongs to an offer we ignored is known now, not when
        // addIceCandidate fails (later, the operations chain may be long).
        const ignoring = ignoreOffer;
        try {
          await pc.addIceCandidate(s.candidate ?? undefined); // no argument: end of candidates
        } catch (e) {
          if (!ignoring) throw e;
        }
        return;
      }
      const readyForOffer = !makingOffer && (pc.signalingState === "stable" || isSettingRemoteAnswerPending);
      ignoreOffer = !polite && s.type === "offer" && !readyForOffer;
      if (ignoreOffer) return;
      isSettingRemoteAnswerPending = s.type === "answer";
      try {
        await pc.setRemoteDescription({ type: s.type, sdp: s.sdp }); // an offer rolls ours back if need be
      } finally {
        isSettingRemoteAnswerPending = false;
      }
      if (s.type === "offer") {
        await pc.setLocalDescription(); // the answer
        describe();
      }
    } catch (e) {
      fail(e);
    }
  };
}
