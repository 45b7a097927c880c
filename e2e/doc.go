// Package e2e holds the end-to-end tests: the real ocnet binary, run as an
// unprivileged user in the bed's client namespace, against the real ocserv
// headend of testbed/up. The tests skip without root (they fail instead
// under CI=true); make test runs them as root.
package e2e
