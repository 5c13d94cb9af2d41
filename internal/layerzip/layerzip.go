// Package layerzip writes and checks the zip archive of the o2-extension
// Lambda layer, byte for byte reproducibly and without a zip binary.
package layerzip

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"debug/elf"
	_ "embed"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"time"
)

const (
	// DirName is the directory entry of the archive. Lambda unzips a layer
	// into /opt, and runs every executable in /opt/extensions at init.
	DirName = "extensions/"
	// EntryName is the only file of the archive: the extension's
	// executable, which becomes /opt/extensions/o2-extension. Its base
	// name is also the name the extension registers under.
	EntryName = DirName + "o2-extension"
	// Perm is the mode of both entries. Lambda runs the functions and
	// extensions as a non-root user, so the file needs every run bit and
	// the directory every search bit.
	Perm fs.FileMode = 0o755
	// WrapperName is the exec wrapper script, which becomes
	// /opt/o2-otel-wrapper: a function sets AWS_LAMBDA_EXEC_WRAPPER to it to
	// point its OpenTelemetry SDK at the extension's OTLP receiver.
	WrapperName = "o2-otel-wrapper"
	// MaxUnzipped is Lambda's limit, in bytes, on the unzipped size of a
	// function's code and layers together (250 MB as AWS counts it).
	MaxUnzipped = 262_144_000
)

// Wrapper is the script packed as WrapperName (the file o2-otel-wrapper of
// this package).
//
//go:embed o2-otel-wrapper
var Wrapper []byte

// Epoch is the modification time of both entries. A fixed time, the
// earliest one MS-DOS dates can hold, keeps the archive a function of the
// binary alone, so the same commit gives byte-identical zips.
var Epoch = time.Date(1980, time.January, 1, 0, 0, 0, 0, time.UTC)

// Zip header constants of the format (APPNOTE.TXT 4.4.2, 4.4.3).
const (
	creatorUnix  = 3  // "made by" host: Unix, so readers honour the mode bits
	zipVersion20 = 20 // 2.0: deflate and directories
	// dosEpochDate is 1980-01-01 in MS-DOS date format: day 1, month 1,
	// years since 1980 = 0; the matching time (00:00:00) is 0.
	dosEpochDate = 1<<5 | 1
)

// Arch describes one of the two architectures Lambda runs.
type Arch struct {
	// Name is Lambda's name for the architecture, as in
	// --compatible-architectures and the zip's file name.
	Name string
	// GOARCH is Go's name for it.
	GOARCH string
	// Machine is the ELF machine a binary for it must declare.
	Machine elf.Machine
}

// Arches lists the architectures Lambda supports, in build order.
var Arches = []Arch{
	{Name: "x86_64", GOARCH: "amd64", Machine: elf.EM_X86_64},
	{Name: "arm64", GOARCH: "arm64", Machine: elf.EM_AARCH64},
}

// LookupArch returns the Arch whose Lambda name is name.
func LookupArch(name string) (Arch, error) {
	for _, a := range Arches {
		if a.Name == name {
			return a, nil
		}
	}
	return Arch{}, fmt.Errorf("unknown architecture %q (want x86_64 or arm64)", name)
}

// Write writes to w a layer archive holding bin as EntryName, preceded by
// the DirName entry and followed by Wrapper as WrapperName, all with mode
// Perm and time Epoch, and comment as the archive comment.
//
// The headers are filled in by hand and written with CreateRaw, so the
// local headers carry the CRC and sizes (no data descriptors) and no field
// depends on the clock, the umask or the host.
func Write(w io.Writer, bin []byte, comment string) error {
	var deflated bytes.Buffer
	fw, err := flate.NewWriter(&deflated, flate.BestCompression)
	if err != nil {
		return fmt.Errorf("deflate: %w", err)
	}
	if _, err := fw.Write(bin); err != nil {
		return fmt.Errorf("deflate: %w", err)
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("deflate: %w", err)
	}

	zw := zip.NewWriter(w)
	dir := header(DirName, fs.ModeDir|Perm)
	dir.Method = zip.Store
	if _, err := zw.CreateRaw(dir); err != nil {
		return fmt.Errorf("write %s: %w", DirName, err)
	}
	file := header(EntryName, Perm)
	file.Method = zip.Deflate
	file.CRC32 = crc32.ChecksumIEEE(bin)
	file.CompressedSize64 = uint64(deflated.Len())
	file.UncompressedSize64 = uint64(len(bin))
	ew, err := zw.CreateRaw(file)
	if err != nil {
		return fmt.Errorf("write %s: %w", EntryName, err)
	}
	if _, err := ew.Write(deflated.Bytes()); err != nil {
		return fmt.Errorf("write %s: %w", EntryName, err)
	}
	// The wrapper is small: stored, as it is.
	wrapper := header(WrapperName, Perm)
	wrapper.Method = zip.Store
	wrapper.CRC32 = crc32.ChecksumIEEE(Wrapper)
	wrapper.CompressedSize64 = uint64(len(Wrapper))
	wrapper.UncompressedSize64 = uint64(len(Wrapper))
	ww, err := zw.CreateRaw(wrapper)
	if err != nil {
		return fmt.Errorf("write %s: %w", WrapperName, err)
	}
	if _, err := ww.Write(Wrapper); err != nil {
		return fmt.Errorf("write %s: %w", WrapperName, err)
	}
	if err := zw.SetComment(comment); err != nil {
		return fmt.Errorf("set comment: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("close zip: %w", err)
	}
	return nil
}

// header returns the fixed part of an entry's header.
func header(name string, mode fs.FileMode) *zip.FileHeader {
	fh := &zip.FileHeader{
		Name:          name,
		ReaderVersion: zipVersion20,
		ModifiedDate:  dosEpochDate,
	}
	fh.SetMode(mode) // sets the Unix mode in ExternalAttrs
	fh.CreatorVersion = creatorUnix<<8 | zipVersion20
	return fh
}

// Info describes a layer archive that passed Check.
type Info struct {
	// Comment is the archive comment.
	Comment string
	// BinarySize is the unzipped size of EntryName in bytes.
	BinarySize int64
	// Machine is the ELF machine of the binary.
	Machine elf.Machine
}

// Check reads the archive in r (size bytes) as Lambda would unpack it and
// reports every way it differs from what Write produces for arch: exactly
// the entries DirName, EntryName and WrapperName in that order, mode Perm,
// time Epoch, the wrapper as this package holds it,
// and a 64-bit little-endian static ELF executable for arch.Machine (no
// PT_INTERP, no DT_NEEDED: Lambda's /opt has no loader of ours).
func Check(r io.ReaderAt, size int64, arch Arch) (Info, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return Info{}, fmt.Errorf("read zip: %w", err)
	}
	info := Info{Comment: zr.Comment}
	var errs []error
	names := make([]string, len(zr.File))
	for i, f := range zr.File {
		names[i] = f.Name
	}
	if len(names) != 3 || names[0] != DirName || names[1] != EntryName || names[2] != WrapperName {
		return info, fmt.Errorf("entries are %q, want [%q %q %q]", names, DirName, EntryName, WrapperName)
	}
	for _, f := range zr.File {
		if !f.Modified.Equal(Epoch) {
			errs = append(errs, fmt.Errorf("%s: modified %v, want %v", f.Name, f.Modified, Epoch))
		}
	}
	if m := zr.File[0].Mode(); !m.IsDir() || m.Perm() != Perm {
		errs = append(errs, fmt.Errorf("%s: mode %v, want %v", DirName, m, fs.ModeDir|Perm))
	}
	f := zr.File[1]
	if m := f.Mode(); !m.IsRegular() || m.Perm() != Perm {
		errs = append(errs, fmt.Errorf("%s: mode %v, want %v", EntryName, m, Perm))
	}
	w := zr.File[2]
	if m := w.Mode(); !m.IsRegular() || m.Perm() != Perm {
		errs = append(errs, fmt.Errorf("%s: mode %v, want %v", WrapperName, m, Perm))
	}
	if w.UncompressedSize64 != uint64(len(Wrapper)) {
		errs = append(errs, fmt.Errorf("%s: %d bytes, want the %d of the script", WrapperName, w.UncompressedSize64, len(Wrapper)))
	} else if script, err := readEntry(w); err != nil {
		errs = append(errs, err)
	} else if !bytes.Equal(script, Wrapper) {
		errs = append(errs, fmt.Errorf("%s: not the script of this build", WrapperName))
	}
	if f.UncompressedSize64 > MaxUnzipped {
		return info, errors.Join(append(errs, fmt.Errorf("%s: %d bytes unzipped, over Lambda's %d", EntryName, f.UncompressedSize64, MaxUnzipped))...)
	}
	bin, err := readEntry(f)
	if err != nil {
		return info, errors.Join(append(errs, err)...)
	}
	info.BinarySize = int64(len(bin))
	machine, err := checkELF(bin, arch)
	info.Machine = machine
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EntryName, err))
	}
	return info, errors.Join(errs...)
}

// readEntry reads f whole; archive/zip checks the CRC at the end.
func readEntry(f *zip.File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Name, err)
	}
	defer rc.Close()
	// The size was bounded by the caller; +1 lets a lying header show.
	bin, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	return bin, nil
}

// checkELF reports how bin fails to be a static executable for arch, and
// the machine it declares.
func checkELF(bin []byte, arch Arch) (elf.Machine, error) {
	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return 0, fmt.Errorf("not an ELF file: %w", err)
	}
	defer ef.Close()
	var errs []error
	if ef.Machine != arch.Machine {
		errs = append(errs, fmt.Errorf("ELF machine %v, want %v for %s", ef.Machine, arch.Machine, arch.Name))
	}
	if ef.Class != elf.ELFCLASS64 || ef.Data != elf.ELFDATA2LSB {
		errs = append(errs, fmt.Errorf("ELF %v %v, want ELFCLASS64 ELFDATA2LSB", ef.Class, ef.Data))
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		errs = append(errs, fmt.Errorf("ELF type %v, want an executable", ef.Type))
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			errs = append(errs, errors.New("has a PT_INTERP program header: dynamically linked, want static"))
		}
	}
	if libs, err := ef.ImportedLibraries(); err != nil {
		errs = append(errs, fmt.Errorf("read DT_NEEDED: %w", err))
	} else if len(libs) > 0 {
		errs = append(errs, fmt.Errorf("needs shared libraries %q, want static", libs))
	}
	return ef.Machine, errors.Join(errs...)
}
