package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ocnet/ocnet/proxy"
)

// proxyFlags are the proxies' own options: credentials, app
// identification and ssh-style local forwards.
type proxyFlags struct {
	forwards       []string
	user           string
	passFile       string
	appFromProcess bool
}

func addProxyFlags(cmd *cobra.Command, f *proxyFlags) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.forwards, "local-forward", "L", nil,
		"forward a local port through the VPN, as ssh -L: [addr:]port:host:hostport; repeatable")
	fl.StringVar(&f.user, "proxy-user", "",
		"username both proxies require (needed when a proxy listens beyond loopback)")
	fl.StringVar(&f.passFile, "proxy-pass-file", "",
		`file whose first line is the proxies' password ("-" = standard input)`)
	fl.BoolVar(&f.appFromProcess, "app-from-process", false,
		"name the app of a proxied flow by the executable that opened it (Linux)")
}

// options checks the flags and reads the password. stdinBusy says that
// another flag already reads standard input. listens are the proxies'
// listen addresses, checked against the credentials.
func (f *proxyFlags) options(stdinBusy bool, listens ...string) (proxy.Options, error) {
	var o proxy.Options
	o.AppFromProcess = f.appFromProcess

	for _, spec := range f.forwards {
		fw, err := proxy.ParseForward(spec)
		if err != nil {
			return o, err
		}
		o.Forwards = append(o.Forwards, fw)
	}

	switch {
	case f.user == "" && f.passFile != "":
		return o, errors.New("--proxy-pass-file needs --proxy-user")
	case f.user != "" && f.passFile == "":
		return o, errors.New("--proxy-user needs --proxy-pass-file (passwords never go on the command line)")
	case f.user != "":
		if len(f.user) > 255 {
			return o, errors.New("--proxy-user: longer than SOCKS5's 255 bytes")
		}
		pass, err := readPassFile(f.passFile, stdinBusy)
		if err != nil {
			return o, err
		}
		o.Auth = &proxy.Auth{User: f.user, Pass: pass}
	}

	for _, addr := range listens {
		if err := proxy.CheckExposure(addr, o.Auth); err != nil {
			return o, err
		}
	}
	return o, nil
}

// readPassFile returns the first line of name, or of standard input for
// "-". The error never contains the file's contents.
func readPassFile(name string, stdinBusy bool) (string, error) {
	var r io.Reader
	if name == "-" {
		if stdinBusy {
			return "", errors.New("--proxy-pass-file -: standard input is already used " +
				"by --passwd-on-stdin or --cookie-on-stdin")
		}
		// Unbuffered, one byte at a time: nothing past the line is taken
		// from standard input.
		r = oneByteReader{os.Stdin}
	} else {
		fh, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("--proxy-pass-file: %w", err)
		}
		defer fh.Close()
		r = fh
	}

	line, err := bufio.NewReaderSize(r, 16).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("--proxy-pass-file %s: no password line", name)
	}
	pass := strings.TrimRight(line, "\r\n")
	switch {
	case pass == "":
		return "", fmt.Errorf("--proxy-pass-file %s: empty password", name)
	case len(pass) > 255:
		return "", fmt.Errorf("--proxy-pass-file %s: password longer than SOCKS5's 255 bytes", name)
	}
	return pass, nil
}

// oneByteReader keeps bufio from reading ahead of the line.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
