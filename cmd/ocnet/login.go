package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ocnet/ocnet/auth"
)

// loginTries is how often an interactive user may retype a password.
const loginTries = 3

// login runs the auth dialogue. A user at a terminal who mistypes the
// password is asked again; a script gets the headend's verdict at once.
// The filler comes back even with an error.
func login(ctx context.Context, f connectFlags, u *url.URL, tlsConf *tls.Config,
	stdin *bufio.Reader, log *slog.Logger) (*auth.Result, *filler, error) {
	fl := &filler{
		answers:   map[string]string{},
		user:      f.user,
		group:     f.authgroup,
		stdin:     stdin,
		fromStdin: f.passwdOnStdin,
		tty:       !f.nonInter && term.IsTerminal(int(os.Stdin.Fd())),
	}
	tries := 1
	if fl.tty && !fl.fromStdin {
		tries = loginTries
	}

	var err error
	for i := 0; i < tries; i++ {
		var res *auth.Result
		res, err = auth.Login(ctx, auth.Options{
			URL:       u,
			TLS:       tlsConf,
			UserAgent: f.useragent,
			Group:     f.authgroup,
			Logger:    log,
		}, fl.fill)
		if err == nil {
			return res, fl, nil
		}
		if !errors.Is(err, auth.ErrAuthFailed) || i == tries-1 {
			break
		}
		fmt.Fprintf(os.Stderr, "Login failed: %v. Try again.\n", err)
	}
	// fl goes back too: a login that failed for the network's sake may
	// have read answers from stdin that a second attempt needs.
	return nil, fl, fmt.Errorf("login to %s: %w", u.Host, err)
}

// reauth returns a way to log in again without a person, when every
// answer came from flags or stdin; nil otherwise. The answers stay in
// memory only.
func (f *filler) reauth(cf connectFlags, u *url.URL, tlsConf *tls.Config,
	log *slog.Logger) func(context.Context) (string, error) {
	if f.asked || len(f.answers) == 0 {
		return nil
	}
	return func(ctx context.Context) (string, error) {
		replay := &filler{user: f.user, group: f.group, replay: f.answers}
		res, err := auth.Login(ctx, auth.Options{
			URL: u, TLS: tlsConf, UserAgent: cf.useragent, Group: cf.authgroup, Logger: log,
		}, replay.fill)
		if err != nil {
			return "", err
		}
		return res.Cookie, nil
	}
}

// filler answers the headend's forms from flags, standard input or the
// terminal, in that order.
type filler struct {
	user      string
	group     string
	stdin     *bufio.Reader
	fromStdin bool // answers to password fields come from stdin
	tty       bool // a person is at the terminal and may be asked

	answers map[string]string // non-interactive answers, for reauth
	asked   bool              // a person answered something
	replay  map[string]string // when set, the only source of answers
	message string            // the current form's prompt, shown before asking
}

// prompt shows the form's message once, then the field's label.
func (f *filler) prompt(label string) {
	if f.message != "" {
		fmt.Fprintf(os.Stderr, "%s\n", sanitize(f.message))
		f.message = ""
	}
	fmt.Fprintf(os.Stderr, "%s ", label)
}

func (f *filler) fill(ctx context.Context, form *auth.Form) error {
	if form.Banner != "" {
		fmt.Fprintf(os.Stderr, "%s\n", sanitize(form.Banner))
	}
	if form.Error != "" {
		fmt.Fprintf(os.Stderr, "Headend says: %s\n", sanitize(form.Error))
	}
	// The form's message is shown only if a person is asked something.
	f.message = form.Message

	for _, fd := range form.Fields {
		if err := f.answer(ctx, fd); err != nil {
			return err
		}
	}
	return nil
}

// readPassword reads from the terminal without echo; Ctrl-C (ctx) wins
// over a read that cannot be interrupted, and then the terminal gets its
// echo back here, since ReadPassword will not return to restore it.
func readPassword(ctx context.Context) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	saved, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		ch <- result{b, err}
	}()
	select {
	case <-ctx.Done():
		term.Restore(fd, saved)
		return nil, ctx.Err()
	case r := <-ch:
		return r.b, r.err
	}
}

func (f *filler) answer(ctx context.Context, fd *auth.Field) error {
	label := strings.TrimSpace(firstNonEmpty(fd.Label, fd.Name))
	if f.replay != nil && (fd.Type == "text" || fd.Type == "password") {
		if fd.Name == "username" && f.user != "" {
			fd.Value = f.user
			return nil
		}
		v, ok := f.replay[fd.Name]
		if !ok {
			return fmt.Errorf("%w: logging in again, the headend asks for %q, "+
				"which was not asked before", auth.ErrAuthFailed, label)
		}
		fd.Value = v
		return nil
	}
	switch fd.Type {
	case "hidden", "submit", "reset":
		return nil

	case "select":
		if fd.Value == "" && len(fd.Options) > 0 {
			fd.Value = fd.Options[0].Value
		}
		return nil

	case "text":
		if fd.Name == "username" && f.user != "" {
			fd.Value = f.user
			return nil
		}
		if !f.tty {
			return fmt.Errorf("%w: the headend asks for %q; give it with --user or "+
				"run interactively", auth.ErrAuthFailed, label)
		}
		f.prompt(label)
		v, err := readLine(bufio.NewReader(os.Stdin))
		if err != nil {
			return fmt.Errorf("reading %q: %w", label, err)
		}
		fd.Value = v
		f.asked = true
		return nil

	case "password":
		if f.fromStdin {
			v, err := readLine(f.stdin)
			if err != nil {
				return fmt.Errorf("%w: no answer for %q on standard input",
					auth.ErrAuthFailed, label)
			}
			fd.Value = v
			f.answers[fd.Name] = v
			return nil
		}
		if !f.tty {
			return fmt.Errorf("%w: the headend asks for %q; use --passwd-on-stdin or "+
				"run interactively", auth.ErrAuthFailed, label)
		}
		f.prompt(label)
		b, err := readPassword(ctx)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return fmt.Errorf("reading %q: %w", label, err)
		}
		fd.Value = string(b)
		f.asked = true
		return nil
	}
	return fmt.Errorf("the headend's form has a %q field (%q) ocnet cannot fill", fd.Type, label)
}
