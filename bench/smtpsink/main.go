// smtpsink: the workers bench's SMTP server. It accepts every mail and writes one line per mail to
// stdout, "<X-Notification-Id> <receive time, Unix ns>", so bench/workers.py keeps its per-email
// latencies. Compiled, so the sink no longer takes the bench's two cores from the worker it measures
// (aiosmtpd cost ~0.8 ms of Python CPU per email, charged to the notifications figure only).
//
//	smtpsink [-addr 127.0.0.1:0]
//
// The first line on stdout is "listening <host:port>".
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// out batches the report lines: a write per mail would cost a syscall each, flushed every few ms instead.
type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *out) line(id []byte, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(id)
	o.w.WriteByte(' ')
	o.w.WriteString(strconv.FormatInt(at.UnixNano(), 10))
	o.w.WriteByte('\n')
}

func (o *out) flushEvery(d time.Duration) {
	for range time.Tick(d) {
		o.mu.Lock()
		if err := o.w.Flush(); err != nil {
			log.Fatalf("smtpsink: stdout: %v", err) // the bench went away
		}
		o.mu.Unlock()
	}
}

var header = []byte("\nX-Notification-Id:")

// notificationID is the X-Notification-Id header's value, looked up in the header block only; "-" when
// the mail has none (it is still counted).
func notificationID(data []byte) []byte {
	head := data
	if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
		head = data[:end]
	} else if end := bytes.Index(data, []byte("\n\n")); end >= 0 {
		head = data[:end]
	}
	at := bytes.Index(head, header)
	if at < 0 {
		return []byte("-")
	}
	rest := head[at+len(header):]
	if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
		rest = rest[:nl]
	}
	if id := bytes.TrimSpace(rest); len(id) > 0 {
		return id
	}
	return []byte("-")
}

type backend struct{ out *out }

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{out: b.out}, nil }

type session struct{ out *out }

func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.out.line(notificationID(data), time.Now())
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("smtpsink: %v", err)
	}
	o := &out{w: bufio.NewWriterSize(os.Stdout, 64<<10)}
	fmt.Fprintf(o.w, "listening %s\n", l.Addr())
	if err := o.w.Flush(); err != nil {
		log.Fatalf("smtpsink: stdout: %v", err)
	}
	go o.flushEvery(5 * time.Millisecond)
	s := smtp.NewServer(&backend{out: o})
	s.Domain = "localhost"
	s.ReadTimeout = 60 * time.Second
	s.WriteTimeout = 60 * time.Second
	s.MaxMessageBytes = 1 << 20
	s.MaxRecipients = 50
	if err := s.Serve(l); err != nil {
		log.Fatalf("smtpsink: %v", err)
	}
}
