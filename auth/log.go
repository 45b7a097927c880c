package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Debug logging of the dialogue. Values that are secrets (answers,
// cookies, session tokens) are never passed to the logger at all, not even
// at a level that is switched off, so no handler can leak them.

// logRequest records a POST: where, which document, which answers by name.
func (l *login) logRequest(u *url.URL, r *request) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	names := make([]string, 0, len(r.answers))
	for _, a := range r.answers {
		names = append(names, a.name)
	}
	l.log.Debug("config-auth POST", "url", displayURL(u), "type", r.typ,
		"group", r.groupSelect, "answers", strings.Join(names, ","),
		"opaque", r.opaque != nil)
}

// logResponse records status and cookie names; cookie values are shown
// only as set or cleared.
func (l *login) logResponse(resp *http.Response) {
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	var cookies []string
	for _, c := range resp.Cookies() {
		if c.Value == "" {
			cookies = append(cookies, c.Name+"=(cleared)")
		} else {
			cookies = append(cookies, c.Name+"=(redacted)")
		}
	}
	l.log.Debug("config-auth reply received", "url", displayURL(resp.Request.URL),
		"status", resp.Status, "content_type", resp.Header.Get("Content-Type"),
		"set_cookie", strings.Join(cookies, " "))
}

// fieldSummary lists a form's fields as type:name, with the value only for
// visible non-secret presets such as a selected group; hidden values may
// be tokens and are left out.
func fieldSummary(fields []*Field) string {
	parts := make([]string, 0, len(fields))
	for _, f := range fields {
		s := f.Type + ":" + f.Name
		if f.Value != "" && !f.Secret() && f.Type != FieldHidden {
			s += "=" + f.Value
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// redacted says whether a secret is present without showing it.
func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "(redacted)"
}
