package layerzip

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io/fs"
	"strings"
	"testing"
	"time"
)

// fakeELF returns a minimal 64-bit little-endian ELF executable for
// machine: a header and one PT_LOAD, plus a PT_INTERP naming a loader when
// interp is set. debug/elf reads it like a real binary.
func fakeELF(t *testing.T, machine elf.Machine, interp bool) []byte {
	t.Helper()
	const ehsize, phsize = 64, 56
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}}
	loader := "/lib64/ld-linux-x86-64.so.2\x00"
	if interp {
		off := uint64(ehsize + 2*phsize)
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: off, Filesz: uint64(len(loader)), Memsz: uint64(len(loader)), Align: 1})
	}
	h := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Phoff:     ehsize,
		Ehsize:    ehsize,
		Phentsize: phsize,
		Phnum:     uint16(len(progs)),
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	if err := binary.Write(&b, binary.LittleEndian, progs); err != nil {
		t.Fatal(err)
	}
	if interp {
		b.WriteString(loader)
	}
	return b.Bytes()
}

func mustArch(t *testing.T, name string) Arch {
	t.Helper()
	a, err := LookupArch(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestWriteThenCheck(t *testing.T) {
	for _, arch := range Arches {
		t.Run(arch.Name, func(t *testing.T) {
			bin := fakeELF(t, arch.Machine, false)
			var a, b bytes.Buffer
			if err := Write(&a, bin, "o2-extension v1 "+arch.Name); err != nil {
				t.Fatal(err)
			}
			if err := Write(&b, bin, "o2-extension v1 "+arch.Name); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Error("two writes of the same binary differ")
			}
			info, err := Check(bytes.NewReader(a.Bytes()), int64(a.Len()), arch)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			want := Info{Comment: "o2-extension v1 " + arch.Name, BinarySize: int64(len(bin)), Machine: arch.Machine}
			if info != want {
				t.Errorf("Info = %+v, want %+v", info, want)
			}
			// No data descriptors: readers that stream the local headers
			// (as unzip -p does) find the sizes there.
			zr, err := zip.NewReader(bytes.NewReader(a.Bytes()), int64(a.Len()))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				if f.Flags&0x8 != 0 {
					t.Errorf("%s has a data descriptor", f.Name)
				}
				if f.CreatorVersion>>8 != creatorUnix {
					t.Errorf("%s: creator host %d, want Unix (%d)", f.Name, f.CreatorVersion>>8, creatorUnix)
				}
			}
		})
	}
}

// entry is one file of a hand-made archive for TestCheckRejects.
type entry struct {
	name string
	mode fs.FileMode
	data []byte
	time time.Time
}

func makeZip(t *testing.T, entries []entry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		fh := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: e.time}
		fh.SetMode(e.mode)
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckRejects(t *testing.T) {
	amd, arm := mustArch(t, "x86_64"), mustArch(t, "arm64")
	good := fakeELF(t, elf.EM_X86_64, false)
	dir := entry{DirName, fs.ModeDir | Perm, nil, Epoch}
	wr := entry{WrapperName, Perm, Wrapper, Epoch}
	tests := []struct {
		name    string
		entries []entry
		arch    Arch
		want    string // a part of the error
	}{
		{"accepts a good archive", []entry{dir, {EntryName, Perm, good, Epoch}, wr}, amd, ""},
		{"wrong machine", []entry{dir, {EntryName, Perm, good, Epoch}, wr}, arm, "ELF machine EM_X86_64, want EM_AARCH64"},
		{"dynamically linked", []entry{dir, {EntryName, Perm, fakeELF(t, elf.EM_X86_64, true), Epoch}, wr}, amd, "PT_INTERP"},
		{"not ELF", []entry{dir, {EntryName, Perm, []byte("#!/bin/sh\necho hi\n"), Epoch}, wr}, amd, "not an ELF file"},
		{"no run bit", []entry{dir, {EntryName, 0o644, good, Epoch}, wr}, amd, "mode -rw-r--r--, want -rwxr-xr-x"},
		{"closed directory", []entry{{DirName, fs.ModeDir | 0o700, nil, Epoch}, {EntryName, Perm, good, Epoch}, wr}, amd, "mode drwx------"},
		{"clock time", []entry{dir, {EntryName, Perm, good, time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC)}, wr}, amd, "modified 2026-01-02"},
		{"binary at the root", []entry{{"o2-extension", Perm, good, Epoch}}, amd, "entries are"},
		{"no directory entry", []entry{{EntryName, Perm, good, Epoch}}, amd, "entries are"},
		{"extra file", []entry{dir, {EntryName, Perm, good, Epoch}, wr, {"extensions/README", 0o644, nil, Epoch}}, amd, "entries are"},
		{"wrong name", []entry{dir, {DirName + "o2-lambda-extension", Perm, good, Epoch}, wr}, amd, "entries are"},
		{"no wrapper", []entry{dir, {EntryName, Perm, good, Epoch}}, amd, "entries are"},
		{"wrapper not executable", []entry{dir, {EntryName, Perm, good, Epoch}, {WrapperName, 0o644, Wrapper, Epoch}}, amd, "o2-otel-wrapper: mode -rw-r--r--"},
		{"another wrapper", []entry{dir, {EntryName, Perm, good, Epoch}, {WrapperName, Perm, []byte("#!/bin/sh\nexec \"$@\"\n"), Epoch}}, amd, "o2-otel-wrapper: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := makeZip(t, tt.entries)
			_, err := Check(bytes.NewReader(z), int64(len(z)), tt.arch)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Check: nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Check: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckNotAZip(t *testing.T) {
	data := []byte("not a zip at all")
	if _, err := Check(bytes.NewReader(data), int64(len(data)), mustArch(t, "x86_64")); err == nil || !strings.Contains(err.Error(), "read zip") {
		t.Fatalf("Check = %v, want a read zip error", err)
	}
}

func TestLookupArch(t *testing.T) {
	tests := []struct {
		name    string
		machine elf.Machine
		goarch  string
		wantErr bool
	}{
		{"x86_64", elf.EM_X86_64, "amd64", false},
		{"arm64", elf.EM_AARCH64, "arm64", false},
		{"amd64", 0, "", true}, // Go's name is not Lambda's
		{"", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := LookupArch(tt.name)
			if (err != nil) != tt.wantErr {
				t.Fatalf("LookupArch(%q) error = %v, want error %v", tt.name, err, tt.wantErr)
			}
			if a.Machine != tt.machine || a.GOARCH != tt.goarch {
				t.Errorf("LookupArch(%q) = %+v", tt.name, a)
			}
		})
	}
}
