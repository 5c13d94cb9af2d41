package main

import (
	"os"
	"strings"
	"testing"

	"github.com/o2-extension/o2-extension/internal/config"
)

// The README documents every variable the extension reads, with its
// default, so that the table cannot fall behind the code.
func TestREADMEListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, v := range config.Variables() {
		row := "| `" + v.Name + "` | `" + v.Default + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README lacks the row for %s with default %q", v.Name, v.Default)
		}
	}
}

// The README's two commands are the ones that work.
func TestREADMECommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"go run ./cmd/o2-demo", "./build.sh test"} {
		if !strings.Contains(string(b), cmd) {
			t.Errorf("README does not show %q", cmd)
		}
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "./build.sh test") {
		t.Error(".ci/run does not call the README's test command")
	}
}
