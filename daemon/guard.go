package daemon

import (
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// guard checks every request before the API sees it (README, Operating it):
//
//   - Host: the listen address (its IP, or the name given in --http),
//     localhost, 127.0.0.1 or [::1] with the listen port, or a name given
//     with --http-allowed-host; else 421. A page that rebinds its own name
//     to this address sends that name, so it is refused. /metrics,
//     /healthz and /readyz also take any IP address (Prometheus and probes
//     scrape by IP, and an IP cannot be rebound).
//   - every method but GET and HEAD is mutating: refused with 403 if it
//     comes from another origin (an Origin header not http(s):// an allowed
//     host, or Sec-Fetch-Site cross-site or same-site), with 415 if it has
//     a body that is not application/json (what a browser sends without a
//     preflight), and with 401 without the token (none under
//     `sluice run --http`, whose API is read-only).
type guard struct {
	next  http.Handler
	tok   *token
	port  string          // the listen port
	hosts map[string]bool // allowed with the listen port
	names map[string]bool // --http-allowed-host without a port: any port
	exact map[string]bool // --http-allowed-host HOST:PORT
}

// newGuard guards next; listen is where the API listens, flag the --http
// it was given (whose name, if it has one, is allowed too).
func newGuard(next http.Handler, tok *token, listen *net.TCPAddr, flag string, allowed []string) *guard {
	g := &guard{next: next, tok: tok, port: strconv.Itoa(listen.Port),
		hosts: map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true},
		names: map[string]bool{}, exact: map[string]bool{}}
	if !listen.IP.IsUnspecified() {
		g.hosts[listen.IP.String()] = true
	}
	if h, _, err := net.SplitHostPort(flag); err == nil && h != "" && net.ParseIP(h) == nil {
		g.hosts[normHost(h)] = true
	}
	for _, a := range allowed {
		if h, p, err := net.SplitHostPort(a); err == nil {
			g.exact[net.JoinHostPort(normHost(h), p)] = true
		} else {
			g.names[normHost(strings.Trim(a, "[]"))] = true
		}
	}
	return g
}

// openPaths need no token and take any IP address as Host.
var openPaths = map[string]bool{"/metrics": true, "/healthz": true, "/readyz": true}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	open := openPaths[r.URL.Path]
	if !g.hostAllowed(r.Host, "80", open) {
		writeError(w, http.StatusMisdirectedRequest, "Host "+strconv.Quote(r.Host)+" is not this daemon's address: use localhost:"+g.port+
			" or the address it listens on, or start it with --http-allowed-host NAME for the name clients use (this refuses DNS rebinding)")
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		g.next.ServeHTTP(w, r)
		return
	}
	if msg := g.crossOrigin(r); msg != "" {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	if msg := bodyRefused(r); msg != "" {
		writeError(w, http.StatusUnsupportedMediaType, msg)
		return
	}
	// Without a token (sluice run) nothing behind the guard mutates: the
	// API answers those requests 405 itself.
	if g.tok != nil && !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		writeError(w, http.StatusUnauthorized, "this request needs the daemon's token: send the header Authorization: Bearer $(cat "+shellQuote(g.tok.path)+")")
		return
	}
	g.next.ServeHTTP(w, r)
}

// hostAllowed checks an authority (a Host header, or an Origin's host)
// whose port is defPort when absent.
func (g *guard) hostAllowed(authority, defPort string, anyIP bool) bool {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		host, port = strings.Trim(authority, "[]"), defPort
	}
	host = normHost(host)
	switch {
	case host == "":
		return false
	case g.hosts[host] && port == g.port, g.names[host], g.exact[net.JoinHostPort(host, port)]:
		return true
	}
	return anyIP && net.ParseIP(host) != nil
}

// crossOrigin says why a mutating request comes from another origin, or "".
func (g *guard) crossOrigin(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "cross-origin request refused (Sec-Fetch-Site: " + site + "): a page from another origin cannot change this daemon's pipelines"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err == nil && u.Path == "" && (u.Scheme == "http" && g.hostAllowed(u.Host, "80", false) || u.Scheme == "https" && g.hostAllowed(u.Host, "443", false)) {
		return ""
	}
	return "cross-origin request refused (Origin: " + origin + "): only pages served from this daemon's own address may change its pipelines"
}

// bodyRefused says why a mutating request's body is refused, or "": it
// must be application/json, or absent. A browser sends text/plain, form
// encodings, or a body without a type, to another origin without asking
// first.
func bodyRefused(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if r.ContentLength != 0 { // -1: chunked
			return "a request body needs Content-Type: application/json"
		}
		return ""
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return "Content-Type " + strconv.Quote(ct) + " refused: send application/json, or no body"
	}
	return ""
}

func (g *guard) authorized(r *http.Request) bool {
	scheme, sent, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && g.tok.matches(strings.TrimSpace(sent))
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// shellQuote quotes path for the shell command in the 401 message when it
// needs it.
func shellQuote(path string) string {
	if strings.IndexFunc(path, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+:@%", c))
	}) < 0 {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
