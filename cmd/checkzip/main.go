// Command checkzip checks Lambda layer zips made by mkzip: the layout
// (exactly extensions/, extensions/o2-extension and the exec wrapper
// o2-otel-wrapper, byte for byte this build's), the run bits, the
// fixed timestamps, and that the binary is a static ELF executable for the
// architecture named. It prints one line per zip with its sizes.
//
// Usage:
//
//	go run ./cmd/checkzip -arch x86_64|arm64 ZIP...
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/o2-extension/o2-extension/internal/layerzip"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "checkzip:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("checkzip", flag.ContinueOnError)
	fs.SetOutput(stderr)
	archName := fs.String("arch", "", "the architecture the binary must be for: `x86_64 or arm64`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no zip named")
	}
	arch, err := layerzip.LookupArch(*archName)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range fs.Args() {
		if err := check(stdout, name, arch); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func check(stdout io.Writer, name string, arch layerzip.Arch) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	info, err := layerzip.Check(f, st.Size(), arch)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: ok: %s %v, ELF %v static, %s %v; zip %s (%d bytes), binary unzipped %s (%d bytes)\n",
		name, layerzip.EntryName, layerzip.Perm, info.Machine, layerzip.WrapperName, layerzip.Perm,
		human(st.Size()), st.Size(), human(info.BinarySize), info.BinarySize)
	return err
}

// human formats n bytes in MiB (or KiB below one MiB).
func human(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}
