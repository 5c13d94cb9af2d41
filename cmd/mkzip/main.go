// Command mkzip packs the o2-extension binary into a Lambda layer zip that
// holds it as extensions/o2-extension, beside the exec wrapper
// o2-otel-wrapper, reproducibly (see package layerzip).
//
// Usage:
//
//	go run ./cmd/mkzip -bin BINARY -o ZIP [-comment TEXT]
//
// The zip is written to a temporary file next to ZIP and renamed into
// place, so a failed run never leaves a half-written zip behind.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/o2-extension/o2-extension/internal/layerzip"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkzip:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkzip", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "", "the extension `binary` to pack")
	out := fs.String("o", "", "the `zip` to write")
	comment := fs.String("comment", "", "the archive comment")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("want -bin BINARY -o ZIP and no arguments")
	}
	data, err := os.ReadFile(*bin)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".mkzip-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := layerzip.Write(tmp, data, *comment); err != nil {
		tmp.Close()
		return err
	}
	// CreateTemp makes the file 0600; a build artefact is world-readable.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), *out)
}
