package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Centrifugo (v6) is driven as its own clients would drive it:
//
//   - Subscribers speak its client protocol v2 in JSON over raw WebSocket
//     connections (/connection/websocket): one text message holding two
//     commands, {"id":1,"connect":{}} and {"id":2,"subscribe":{"channel":…}}
//     on lines of their own; the subscriber is ready at the reply to id 2.
//     Every text message from the server holds one or more replies or
//     pushes, one JSON object a line. A publication is
//     {"push":{"channel":…,"pub":{"data":…}}}. An empty object {} is the
//     server's ping, answered with {}.
//   - The publisher calls the HTTP server API: POST /api/batch with
//     X-API-Key and the publications queued since the last call, up to the
//     window, as publish commands ({"channel":…,"data":…}) that Centrifugo
//     runs in order (not "parallel"); one call at a time on a keep-alive
//     connection, each answered once Centrifugo has handed its
//     publications to its broker. So the publisher keeps up to the window
//     of publications in flight, as it does on Switchyard's connection,
//     and order holds. (One /api/publish at a time, as before, gets ~85
//     publications a second here: Centrifugo answers after its fan-out.)
//
// Publication data must be JSON there, so the payload travels as a JSON
// string of Payload bytes, quotes included: the 16-byte header the other
// targets send raw (send time, sequence number) in unpadded base64url
// (cfHeaderLen characters), then filler letters. A subscriber decodes the
// header back and accounts for it as for the other targets.

// cfHeaderLen is the length of the payload header in unpadded base64url;
// cfMinPayload the smallest payload: the header in a JSON string.
const (
	cfHeaderLen  = 22 // base64.RawURLEncoding.EncodedLen(payloadHeader)
	cfMinPayload = cfHeaderLen + 2
)

// cfEncodePayload writes the JSON string of size bytes that carries
// header (payloadHeader bytes) into dst, which must hold size bytes.
func cfEncodePayload(dst, header []byte) {
	dst[0] = '"'
	base64.RawURLEncoding.Encode(dst[1:1+cfHeaderLen], header[:payloadHeader])
	for i := 1 + cfHeaderLen; i < len(dst)-1; i++ {
		dst[i] = 'a' + byte(i%26)
	}
	dst[len(dst)-1] = '"'
}

// cfDecodePayload recovers the payload header from a publication's data
// written by cfEncodePayload.
func cfDecodePayload(data []byte, header *[payloadHeader]byte) bool {
	if len(data) < cfMinPayload || data[0] != '"' || data[len(data)-1] != '"' {
		return false
	}
	n, err := base64.RawURLEncoding.Decode(header[:], data[1:1+cfHeaderLen])
	return err == nil && n == payloadHeader
}

// cfKind is what a line from the server is, as far as the load generator
// cares.
type cfKind int

const (
	cfOther       cfKind = iota // a reply or push the load generator ignores
	cfPing                      // {}: answer {}
	cfReply                     // a successful reply to command ID
	cfError                     // an error reply to command ID: Code, Message
	cfPublication               // a publication in Channel: Data
	cfDisconnect                // the server closes the connection: Code, Message
	cfUnsubscribe               // the server ended the subscription to Channel: Code, Message
)

func (k cfKind) String() string {
	switch k {
	case cfPing:
		return "ping"
	case cfReply:
		return "reply"
	case cfError:
		return "error"
	case cfPublication:
		return "publication"
	case cfDisconnect:
		return "disconnect"
	case cfUnsubscribe:
		return "unsubscribe"
	}
	return "other"
}

// cfMessage is one line from the server, decoded as far as needed.
type cfMessage struct {
	Kind    cfKind
	ID      uint32
	Channel []byte // aliases the input on the fast path
	Data    []byte // the publication's data, raw JSON; aliases the input
	Code    uint32
	Message string // an error's message, a disconnect's or unsubscribe's reason
}

// cfWire is the JSON of a reply or push, for decoding with encoding/json.
type cfWire struct {
	ID        uint32           `json:"id"`
	Error     *cfWireError     `json:"error"`
	Connect   *json.RawMessage `json:"connect"`
	Subscribe *json.RawMessage `json:"subscribe"`
	Push      *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data json.RawMessage `json:"data"`
		} `json:"pub"`
		Disconnect  *cfWireError `json:"disconnect"`
		Unsubscribe *cfWireError `json:"unsubscribe"`
	} `json:"push"`
}

// cfWireError is an error reply (code, message) or the body of a
// disconnect or unsubscribe push (code, reason).
type cfWireError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// cfPubPrefix leads a publication push as Centrifugo encodes it (its
// generated encoder writes the fields in a fixed order and leaves out
// empty ones): {"push":{"channel":"NAME","pub":{"data":DATA}}}.
var (
	cfPubPrefix = []byte(`{"push":{"channel":"`)
	cfPubMiddle = []byte(`","pub":{"data":"`)
	cfPubEnd    = []byte(`"}}}`)
)

// parseCentrifugo decodes one line (one JSON object) from the server.
// Publications whose data is a JSON string without escapes and no other
// field, as the load generator publishes them, take a fast path without
// encoding/json; everything else goes through parseCentrifugoJSON, which
// gives the same result for them (FuzzParseCentrifugo).
func parseCentrifugo(line []byte) (cfMessage, error) {
	if rest, ok := bytes.CutPrefix(line, cfPubPrefix); ok {
		i := bytes.IndexByte(rest, '"')
		if i >= 0 && plainASCII(rest[:i]) {
			if data, ok := bytes.CutPrefix(rest[i:], cfPubMiddle); ok {
				j := bytes.IndexByte(data, '"')
				if j >= 0 && plainASCII(data[:j]) && bytes.Equal(data[j:], cfPubEnd) {
					open := len(line) - len(data) - 1 // the data string's opening quote
					return cfMessage{Kind: cfPublication, Channel: rest[:i], Data: line[open : open+j+2]}, nil
				}
			}
		}
	}
	return parseCentrifugoJSON(line)
}

// plainASCII reports whether b can sit between the quotes of a JSON string
// as it is: printable ASCII, no quote, no backslash.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// parseCentrifugoJSON decodes one line with encoding/json.
func parseCentrifugoJSON(line []byte) (cfMessage, error) {
	if t := bytes.TrimSpace(line); len(t) == 2 && t[0] == '{' && t[1] == '}' {
		return cfMessage{Kind: cfPing}, nil
	}
	var w cfWire
	if err := json.Unmarshal(line, &w); err != nil {
		return cfMessage{}, fmt.Errorf("centrifugo: bad reply %.200q: %w", line, err)
	}
	m := cfMessage{ID: w.ID}
	switch {
	case w.Error != nil:
		m.Kind, m.Code, m.Message = cfError, w.Error.Code, w.Error.Message
	case w.ID != 0:
		m.Kind = cfReply
	case w.Push == nil:
	case w.Push.Pub != nil:
		m.Kind, m.Channel, m.Data = cfPublication, []byte(w.Push.Channel), w.Push.Pub.Data
	case w.Push.Disconnect != nil:
		m.Kind, m.Code, m.Message = cfDisconnect, w.Push.Disconnect.Code, w.Push.Disconnect.Reason
	case w.Push.Unsubscribe != nil:
		m.Kind, m.Channel, m.Code, m.Message = cfUnsubscribe, []byte(w.Push.Channel), w.Push.Unsubscribe.Code, w.Push.Unsubscribe.Reason
	}
	return m, nil
}

// eachCentrifugo calls fn for every line of a message from the server:
// replies and pushes are batched one JSON object a line.
func eachCentrifugo(msg []byte, fn func(cfMessage) error) error {
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := parseCentrifugo(line)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// centrifugo speaks to a Centrifugo server; see the top of the file.
type centrifugo struct {
	// immutable after newCentrifugo
	channel   string
	hello     []byte // connect and subscribe commands
	pong      []byte
	pubURL    string
	infoURL   string
	batchURL  string
	window    int
	queue     chan []byte // publications for the batcher, JSON strings
	apiKey    string
	transport *http.Transport
	client    *http.Client

	// set by startAPI
	ctx    context.Context // cancelled by stopAPI
	cancel context.CancelFunc

	// owned by the publish loop
	l      *load  // set by the first publish
	body   []byte // the publish request; the payload's JSON string at data
	data   int
	answer []byte // owned by whoever calls: startAPI, then the batcher

	batched sync.WaitGroup // the batcher, started by startAPI
}

var (
	_ protocol     = (*centrifugo)(nil)
	_ apiPublisher = (*centrifugo)(nil)
)

func newCentrifugo(cfg Config) *centrifugo {
	channel, _ := json.Marshal(cfg.Channel)
	c := &centrifugo{
		channel: cfg.Channel,
		hello:   fmt.Appendf(nil, "{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{\"channel\":%s}}", channel),
		pong:    []byte("{}"),
		pubURL:  cfg.PubURL,
		apiKey:  cfg.APIKey,
		window:  max(cfg.Window, 1),
		// Publishes go one at a time: one keep-alive connection.
		transport: &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute},
	}
	c.client = &http.Client{Transport: c.transport, Timeout: 10 * time.Second}
	if base, ok := strings.CutSuffix(c.pubURL, "/publish"); ok {
		c.infoURL = base + "/info"
		c.batchURL = base + "/batch"
	}
	c.queue = make(chan []byte, c.window)
	c.body = fmt.Appendf(nil, `{"channel":%s,"data":`, channel)
	c.data = len(c.body)
	c.body = append(c.body, make([]byte, cfg.Payload)...)
	c.body = append(c.body, '}')
	return c
}

func (cf *centrifugo) acks() bool { return true } // each publish command of a batch is answered

func (cf *centrifugo) subscribe(s *subscriber) error {
	return s.c.WriteMessage(websocket.TextMessage, cf.hello)
}

func (cf *centrifugo) handle(*subscriber, []byte) error {
	return errors.New("binary message from centrifugo: the JSON protocol sends text")
}

func (cf *centrifugo) handleText(s *subscriber, msg []byte) error {
	return eachCentrifugo(msg, func(m cfMessage) error {
		switch m.Kind {
		case cfPublication:
			if string(m.Channel) != cf.channel {
				return fmt.Errorf("publication in channel %q, subscribed to %q", m.Channel, cf.channel)
			}
			var h [payloadHeader]byte
			if !cfDecodePayload(m.Data, &h) {
				s.deliver(nil) // counted as out of order
				return nil
			}
			s.deliver(h[:])
		case cfPing:
			return s.c.WriteMessage(websocket.TextMessage, cf.pong)
		case cfReply:
			if m.ID == 2 {
				s.markReady()
			}
		case cfError:
			return fmt.Errorf("centrifugo refused command %d: error %d: %s", m.ID, m.Code, m.Message)
		case cfDisconnect:
			return fmt.Errorf("centrifugo disconnected the client: %d %s", m.Code, m.Message)
		case cfUnsubscribe:
			return fmt.Errorf("centrifugo unsubscribed the client from %q: %d %s", m.Channel, m.Code, m.Message)
		}
		return nil
	})
}

// startAPI checks the key and the API with an info call.
func (cf *centrifugo) startAPI(ctx context.Context) error {
	cf.ctx, cf.cancel = context.WithCancel(context.Background())
	if cf.infoURL != "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := cf.call(ctx, cf.infoURL, []byte("{}")); err != nil {
			return err
		}
	}
	cf.batched.Go(cf.batcher)
	return nil
}

func (cf *centrifugo) stopAPI() {
	if cf.cancel != nil {
		cf.cancel()
	}
	cf.batched.Wait()
	cf.transport.CloseIdleConnections()
}

// publish queues the payload for the batcher; it waits while the window's
// worth is queued (the publish loop's window, counting acks, keeps it from
// that in practice).
func (cf *centrifugo) publish(p *publisher, payload []byte) error {
	if cf.batchURL == "" {
		return fmt.Errorf("centrifugo: API URL %q does not end in /publish", cf.pubURL)
	}
	if cf.l == nil {
		cf.l = p.l
	}
	data := make([]byte, len(cf.body)-1-cf.data)
	cfEncodePayload(data, payload)
	select {
	case cf.queue <- data:
		return nil
	case <-cf.ctx.Done():
		return cf.ctx.Err()
	}
}

// batcher posts what is queued, up to the window at once, as one
// /api/batch call of publish commands run in order, and counts each
// answered command as an ack (or an error).
func (cf *centrifugo) batcher() {
	channel, _ := json.Marshal(cf.channel)
	var body []byte
	var datas [][]byte
	for {
		select {
		case d := <-cf.queue:
			datas = append(datas[:0], d)
		case <-cf.ctx.Done():
			return
		}
	more:
		for len(datas) < cf.window {
			select {
			case d := <-cf.queue:
				datas = append(datas, d)
			default:
				break more
			}
		}
		body = append(body[:0], `{"commands":[`...)
		for i, d := range datas {
			if i > 0 {
				body = append(body, ',')
			}
			body = fmt.Appendf(body, `{"publish":{"channel":%s,"data":%s}}`, channel, d)
		}
		body = append(body, "]}"...)
		if err := cf.batch(body, len(datas)); err != nil {
			if cf.ctx.Err() != nil {
				return
			}
			for range datas {
				cf.l.fail("centrifugo publish: %v", err)
			}
		}
	}
}

// batch posts one batch of n commands and counts the answers.
func (cf *centrifugo) batch(body []byte, n int) error {
	if err := cf.call(cf.ctx, cf.batchURL, body); err != nil {
		return err
	}
	var a struct {
		Replies []struct {
			Error *cfWireError `json:"error"`
		} `json:"replies"`
	}
	if err := json.Unmarshal(cf.answer, &a); err != nil {
		return fmt.Errorf("batch answer %.200q: %w", cf.answer, err)
	}
	if len(a.Replies) != n {
		return fmt.Errorf("batch of %d answered with %d replies", n, len(a.Replies))
	}
	for _, r := range a.Replies {
		if r.Error != nil {
			cf.l.fail("centrifugo publish: error %d: %s", r.Error.Code, r.Error.Message)
			continue
		}
		cf.l.acked.Add(1)
	}
	return nil
}

// call posts body to the API and checks that it answered without error.
func (cf *centrifugo) call(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if cf.apiKey != "" {
		req.Header.Set("X-API-Key", cf.apiKey)
	}
	resp, err := cf.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := bytes.NewBuffer(cf.answer[:0])
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, 1<<20))
	cf.answer = buf.Bytes()
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %.200s", url, resp.Status, cf.answer)
	}
	var a struct {
		Error *cfWireError `json:"error"`
	}
	if err := json.Unmarshal(cf.answer, &a); err != nil {
		return fmt.Errorf("%s: bad answer %.200q: %w", url, cf.answer, err)
	}
	if a.Error != nil {
		return fmt.Errorf("%s: error %d: %s", url, a.Error.Code, a.Error.Message)
	}
	return nil
}

func (cf *centrifugo) connectPublisher(*publisher) error {
	return errors.New("centrifugo publishes through its HTTP API, not a connection")
}

func (cf *centrifugo) handlePublisher(*publisher, []byte) error { return nil }
