package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostsLookup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	const hosts = `127.0.0.1 localhost
# 10.0.0.9 sandbox.localdomain (a comment)
::1 sandbox.localdomain
169.254.100.1	sandbox.localdomain sandbox # the sandbox
`
	if err := os.WriteFile(path, []byte(hosts), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, name, want string }{
		{path, "sandbox.localdomain", "169.254.100.1"},
		{path, "SANDBOX.localdomain", "169.254.100.1"},
		{path, "localhost", "127.0.0.1"},
		{path, "other", ""},
		{filepath.Join(t.TempDir(), "missing"), "sandbox.localdomain", ""},
	} {
		if got := hostsLookup(tc.file, tc.name); got != tc.want {
			t.Errorf("hostsLookup(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Without a hosts entry the listener binds loopback, never all interfaces.
func TestListenAddressDefaultsToLoopback(t *testing.T) {
	addr, host := listenAddress(0)
	if hostsLookup("/etc/hosts", "sandbox.localdomain") == "" && addr != "127.0.0.1:0" {
		t.Errorf("addr = %q, want 127.0.0.1:0", addr)
	}
	if host != "sandbox.localdomain" {
		t.Errorf("destination host = %q", host)
	}
}
