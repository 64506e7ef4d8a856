package signaling_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/switchyard/switchyard/signaling"
)

// loopbackAPI keeps a pion peer on the loopback interface.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// Two pion peers that may only use relayed candidates reach each other
// through the embedded TURN server, with the credentials signaling hands
// out; wrong credentials get no relay.
func TestEmbeddedTURN(t *testing.T) {
	const secret = "turn-test-secret"
	ts, err := signaling.StartTURN(signaling.TURNConfig{Listen: "127.0.0.1:0", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if !strings.HasPrefix(ts.URL(), "turn:127.0.0.1:") {
		t.Fatal(ts.URL())
	}
	n := startServer(t, signaling.Config{ICEServers: []signaling.ICEServer{{URLs: []string{ts.URL()}}}, TURNSecret: secret})
	iceOf := func(j map[string]any) []webrtc.ICEServer {
		s := j["iceServers"].([]any)[0].(map[string]any)
		return []webrtc.ICEServer{{
			URLs: []string{s["urls"].([]any)[0].(string)}, Username: s["username"].(string), Credential: s["credential"].(string),
		}}
	}
	a := dial(t, n.url)
	b := dial(t, n.url)
	iceA, iceB := iceOf(a.join("turn")), iceOf(b.join("turn"))

	api := loopbackAPI()
	newPC := func(servers []webrtc.ICEServer) *webrtc.PeerConnection {
		pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: servers, ICETransportPolicy: webrtc.ICETransportPolicyRelay})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	pa, pb := newPC(iceA), newPC(iceB)
	got := make(chan string, 1)
	pb.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { got <- string(m.Data) })
	})
	dc, err := pa.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { _ = dc.SendText("through the relay") })
	// Full ICE gathering, then one offer and one answer: no trickle needed.
	exchange := func(pc *webrtc.PeerConnection, sdp webrtc.SessionDescription, isOffer bool) webrtc.SessionDescription {
		t.Helper()
		if !isOffer {
			if err := pc.SetRemoteDescription(sdp); err != nil {
				t.Fatal(err)
			}
		}
		var desc webrtc.SessionDescription
		if isOffer {
			desc, err = pc.CreateOffer(nil)
		} else {
			desc, err = pc.CreateAnswer(nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(desc); err != nil {
			t.Fatal(err)
		}
		<-gathered
		return *pc.LocalDescription()
	}
	offer := exchange(pa, webrtc.SessionDescription{}, true)
	if !strings.Contains(offer.SDP, "typ relay") {
		t.Fatalf("no relay candidate in the offer:\n%s", offer.SDP)
	}
	answer := exchange(pb, offer, false)
	if err := pa.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "through the relay" {
			t.Fatal(m)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no message through the TURN relay (ICE %s / %s)", pa.ICEConnectionState(), pb.ICEConnectionState())
	}
	pair, err := pa.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Fatalf("selected pair %v, %v", pair, err)
	}

	// Forged credentials get no allocation: no relay candidate at all.
	bad := newPC([]webrtc.ICEServer{{URLs: []string{ts.URL()}, Username: iceA[0].Username, Credential: "forged"}})
	if _, err := bad.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	if off := exchange(bad, webrtc.SessionDescription{}, true); strings.Contains(off.SDP, "typ relay") {
		t.Fatal("a relay candidate with forged credentials")
	}
}
