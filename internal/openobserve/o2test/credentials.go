package o2test

import "maps"

// SetCredentials replaces the accepted credentials (email to secret) while
// the server runs, as when a password or ingestion token is rotated: from
// the next request on, only these are accepted. Empty means
// {DefaultEmail: DefaultSecret}.
func (s *Server) SetCredentials(creds map[string]string) {
	c := maps.Clone(creds)
	if len(c) == 0 {
		c = map[string]string{DefaultEmail: DefaultSecret}
	}
	s.mu.Lock()
	s.creds = c
	s.mu.Unlock()
}

// credentials returns the accepted credentials; the map is never modified
// once set, so it may be read after the lock is released.
func (s *Server) credentials() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creds
}
