package o2test

import (
	"net/http"
	"strings"
)

// The organization rules of OpenObserve's auth layer (read at fbab9b80,
// src/api/common/src/auth/validator.rs):
//   - a user other than root is looked up in the organization named in the
//     path (lines 413-428), so an organization that does not exist refuses
//     the user: 401, the same answer as a wrong password;
//   - root is checked against the "default" org, and an organization that
//     does not exist is then, on an ingestion write with
//     ZO_CREATE_ORG_THROUGH_INGESTION=true (the default), created on the
//     spot; on any other route, or with that setting off, it is 404
//     "Organization not found" (lines 795-811);
//   - an ingestion token, and an org-level "o2oi_" token, are accepted only
//     on ingestion routes, the writes and the Elasticsearch handshake reads
//     such as GET /api/{org}/_license (src/common/src/meta/ingestion_routes.rs).

// routeKind is how OpenObserve's ingestion-route table classifies a request.
type routeKind int

const (
	otherRoute     routeKind = iota // not an ingestion route
	ingestionWrite                  // POST _json, /v1/logs, /v1/metrics, /v1/traces, ...
	handshakeRead                   // GET /api/{org}/_license and the like
)

// orgTokenPrefix starts OpenObserve's org-level ingestion tokens (migration
// m20260506_000001): the user part of the Basic credentials is not checked.
const orgTokenPrefix = "o2oi_"

// principal is who a request authenticated as.
type principal struct {
	email    string
	root     bool
	orgToken string // the org an o2oi_ token belongs to, if that was used
}

// authorize authenticates h for a request to org on a route of kind, and
// applies the organization rules. It may create org (root, ingestion
// write). It returns ok, or the reply to send.
func (s *Server) authorize(h http.Header, org string, kind routeKind) (reply, bool) {
	p, rep, ok := s.identify(h, kind)
	if !ok {
		return rep, false
	}
	if p.orgToken != "" {
		if p.orgToken != org {
			return deny(unauthorized), false
		}
		return reply{}, true
	}
	if s.orgKnown(org) {
		return reply{}, true
	}
	switch {
	case !p.root:
		// Looked up in an organization that does not exist: not found.
		return deny(unauthorized), false
	case kind == ingestionWrite && !s.noAutoCreate:
		s.addOrg(org)
		return reply{}, true
	}
	return textReply(http.StatusNotFound, "Organization not found"), false
}

// identify checks the Authorization header the way OpenObserve's OSS build
// does (openobserve-api.md §2) and says who it is.
func (s *Server) identify(h http.Header, kind routeKind) (principal, reply, bool) {
	rep, ok := s.authenticate(h)
	if ok {
		user, _, _ := parseBasic(h.Values("Authorization")[0])
		return principal{email: user, root: user == s.rootEmail}, reply{}, true
	}
	if kind == otherRoute || len(h.Values("Authorization")) == 0 {
		return principal{}, rep, false
	}
	// Ingestion routes also take a user's ingestion token, and org tokens.
	user, secret, okBasic := parseBasic(h.Values("Authorization")[0])
	if !okBasic || secret == "" {
		return principal{}, rep, false
	}
	s.mu.Lock()
	tokens, orgTokens := s.tokens, s.orgTokens
	s.mu.Unlock()
	if strings.HasPrefix(secret, orgTokenPrefix) {
		if org, known := orgTokens[secret]; known {
			return principal{orgToken: org}, reply{}, true
		}
		return principal{}, rep, false
	}
	if want, known := tokens[user]; known && want == secret {
		return principal{email: user, root: user == s.rootEmail}, reply{}, true
	}
	return principal{}, rep, false
}

func (s *Server) orgKnown(org string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.orgs) == 0 || s.orgs[org]
}

func (s *Server) addOrg(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orgs[org] = true
	s.createdOrgs = append(s.createdOrgs, org)
}

// CreatedOrgs lists the organizations created on the spot by a root
// user's ingestion write, in order: what a mistyped O2_ORGANIZATION_ID does
// on a real OpenObserve.
func (s *Server) CreatedOrgs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.createdOrgs...)
}

// matchHandshakeRoute matches GET|HEAD /api/{org}/_license, one of the
// Elasticsearch handshake reads (router/mod.rs line 761); OpenObserve
// answers it {"status":"active"} (organization/es.rs line 53).
func matchHandshakeRoute(path string) (org string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return "", false
	}
	org, tail, ok := strings.Cut(rest, "/")
	return org, ok && tail == "_license" && org != ""
}

// writeReply writes rep.
func writeReply(w http.ResponseWriter, rep reply) {
	for k, v := range rep.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rep.status)
	if len(rep.body) > 0 {
		_, _ = w.Write(rep.body)
	}
}
