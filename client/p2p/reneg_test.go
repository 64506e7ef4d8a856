package p2p_test

import (
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/switchyard/switchyard/signaling"
)

// TestRenegotiationGlare: both sides of a connected pair add a track at
// once, and their offers cross. The polite side cannot roll back: it
// replaces its PeerConnection (which closes the connection, at both ends),
// and the application puts a data channel back on the new one in
// OnConnection, as documented; the new one offers, the impolite side takes
// that offer on a new PeerConnection (OnConnection there too, where it
// puts its own channel back), and the two are connected again.
func TestRenegotiationGlare(t *testing.T) {
	url := startServer(t, signaling.Config{})
	a, b, _, _ := connectPair(t, url)
	ida, idb := a.room.PeerID(), b.room.PeerID()

	putBack := make(chan *channel, 8)
	for _, p := range []*tpeer{a, b} {
		p.room.OnConnection(func(id string, pc *webrtc.PeerConnection) {
			p.watch(pc)
			dc, err := pc.CreateDataChannel("back-"+p.name, nil)
			if err != nil {
				t.Error(err)
				return
			}
			push(t, putBack, wrap(t, dc))
			push(t, p.conns, connEvent{id, pc})
		})
	}
	releaseA, releaseB := a.room.HoldWrites(), b.room.HoldWrites()
	for _, side := range []struct {
		p     *tpeer
		other string
	}{{a, idb}, {b, ida}} {
		pc, err := side.p.room.Peer(side.other)
		if err != nil {
			t.Fatal(err)
		}
		track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, "audio", side.p.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(track); err != nil {
			t.Fatal(err)
		}
		eventually(t, side.p.name+" offers", func() bool { return pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer })
	}
	releaseA()
	releaseB()

	polite, impolite := a, b
	if idb < ida {
		polite, impolite = b, a
	}
	// Each side gets one new PeerConnection, and the channel the other side
	// put back on its own.
	cp := recv(t, polite.conns, "polite: OnConnection(replacement)")
	ci := recv(t, impolite.conns, "impolite: OnConnection(new)")
	back1, back2 := recv(t, putBack, "a channel put back"), recv(t, putBack, "another")
	atPolite := wrap(t, recv(t, polite.dcs, "polite: OnDataChannel"))
	atImpolite := wrap(t, recv(t, impolite.dcs, "impolite: OnDataChannel"))
	for _, c := range []*channel{back1, back2, atPolite, atImpolite} {
		c.waitOpen(t)
	}
	if atPolite.dc.Label() != "back-"+impolite.name || atImpolite.dc.Label() != "back-"+polite.name {
		t.Errorf("labels: %q at the polite side, %q at the impolite side", atPolite.dc.Label(), atImpolite.dc.Label())
	}
	fromPolite := back1
	if back1.dc.Label() != "back-"+polite.name {
		fromPolite = back2
	}
	exchange(t, fromPolite, atImpolite, "after the glare")
	for _, c := range []connEvent{cp, ci} {
		if s := c.pc.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
			t.Errorf("pc %s", s)
		}
	}
	if _, rp, _ := polite.room.Glare(map[bool]string{true: idb, false: ida}[polite == a]); rp != 1 {
		t.Errorf("polite: %d replacements", rp)
	}
	none(t, polite.conns, "polite: another OnConnection")
	none(t, impolite.conns, "impolite: another OnConnection")
	none(t, a.errs, "a: error")
	none(t, b.errs, "b: error")
}
