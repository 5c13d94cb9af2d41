package layer

import (
	"archive/zip"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// arches maps Lambda's architecture names to what the binary must be.
var arches = []struct {
	name    string
	goarch  string
	machine elf.Machine
}{
	{"x86_64", "amd64", elf.EM_X86_64},
	{"arm64", "arm64", elf.EM_AARCH64},
}

// TestBuildZipsAsLambdaReadsThem opens each zip the way Lambda unpacks a
// layer into /opt: it must hold exactly extensions/,
// extensions/o2-extension and the exec wrapper o2-otel-wrapper (a POSIX sh
// script), with Unix modes that make the files executable by Lambda's
// non-root user, and the file must be a static ELF executable
// for the layer's architecture, stamped with the version.
func TestBuildZipsAsLambdaReadsThem(t *testing.T) {
	dist := builtDist(t)
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			path := filepath.Join(dist, "o2-extension-"+a.name+".zip")
			zr, err := zip.OpenReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()

			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
			}
			if want := []string{"extensions/", "extensions/o2-extension", "o2-otel-wrapper"}; strings.Join(names, " ") != strings.Join(want, " ") {
				t.Fatalf("entries = %q, want %q", names, want)
			}
			dir, file := zr.File[0], zr.File[1]
			for _, f := range zr.File {
				// Unpackers take the mode from the external attributes
				// only when the creator is Unix (3).
				if host := f.CreatorVersion >> 8; host != 3 {
					t.Errorf("%s: created on host %d, want Unix (3)", f.Name, host)
				}
				if want := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC); !f.Modified.Equal(want) {
					t.Errorf("%s: modified %v, want the fixed %v", f.Name, f.Modified, want)
				}
			}
			if m := dir.Mode(); m != fs.ModeDir|0o755 {
				t.Errorf("extensions/: mode %v, want drwxr-xr-x", m)
			}
			if m := file.Mode(); m != 0o755 {
				t.Errorf("extensions/o2-extension: mode %v, want -rwxr-xr-x", m)
			}
			if m := zr.File[2].Mode(); m != 0o755 {
				t.Errorf("o2-otel-wrapper: mode %v, want -rwxr-xr-x", m)
			}
			if w := readZipFile(t, zr.File[2]); !bytes.HasPrefix(w, []byte("#!/bin/sh\n")) || !bytes.Contains(w, []byte(`exec "$@"`)) {
				t.Errorf("o2-otel-wrapper is not the exec wrapper script:\n%s", w)
			}

			bin := readZipFile(t, file)
			ef, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("extensions/o2-extension is not ELF: %v", err)
			}
			if ef.Machine != a.machine || ef.Class != elf.ELFCLASS64 || ef.Type != elf.ET_EXEC {
				t.Errorf("ELF %v %v %v, want %v ELFCLASS64 ET_EXEC", ef.Machine, ef.Class, ef.Type, a.machine)
			}
			for _, p := range ef.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("the binary has PT_INTERP: dynamically linked, but /opt has no loader")
				}
			}
			if libs, err := ef.ImportedLibraries(); err != nil || len(libs) > 0 {
				t.Errorf("ImportedLibraries = %q, %v; want none", libs, err)
			}

			bi, err := buildinfo.Read(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("read build info: %v", err)
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			for k, want := range map[string]string{"GOOS": "linux", "GOARCH": a.goarch, "CGO_ENABLED": "0", "-trimpath": "true", "-tags": "nethttpomithttp2"} {
				if settings[k] != want {
					t.Errorf("build setting %s = %q, want %q", k, settings[k], want)
				}
			}
			if want := "github.com/o2-extension/o2-extension/cmd/o2-extension"; bi.Path != want {
				t.Errorf("main package %q, want %q", bi.Path, want)
			}
			// -X main.version stores the string in the binary's data.
			if !bytes.Contains(bin, []byte(testVersion)) {
				t.Errorf("the binary does not contain the version %q", testVersion)
			}
			mustContain(t, "zip comment", zr.Comment, testVersion, "linux/"+a.goarch)
			if v, err := os.ReadFile(filepath.Join(dist, "o2-extension-"+a.name+".version")); err != nil || string(v) != testVersion+"\n" {
				t.Errorf("version file = %q, %v; want %q", v, err, testVersion+"\n")
			}

			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: zip %d bytes, extensions/o2-extension %d bytes unzipped", filepath.Base(path), st.Size(), len(bin))
		})
	}
}

func readZipFile(t *testing.T, f *zip.File) []byte {
	t.Helper()
	rc, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc) // archive/zip checks the CRC at EOF
	if err != nil {
		t.Fatalf("read %s: %v", f.Name, err)
	}
	return b
}

// TestBuildReproducible builds from two copies of the sources at
// different paths: first each architecture alone (BUILD_TARGETS), where
// only that zip must appear, then both at once. The zips must be
// byte-identical. Copies, because the work tree may change under a
// running test, and two paths, because -trimpath must make the path
// irrelevant.
func TestBuildReproducible(t *testing.T) {
	t.Parallel() // with TestDeployToMoto: one compiles, the other waits on the aws CLI
	srcA := filepath.Join(t.TempDir(), "a")
	copyTree(t, root, srcA)
	srcB := filepath.Join(t.TempDir(), "b", "longer", "path")
	copyTree(t, srcA, srcB)

	distA := t.TempDir()
	for i, a := range arches {
		res := runScriptIn(t, srcA, buildEnv(distA, "BUILD_TARGETS="+a.name), "build.sh")
		mustContain(t, "build output", res.stdout, "o2-extension-"+a.name+".zip: ok")
		zips, err := filepath.Glob(filepath.Join(distA, "*.zip"))
		if err != nil {
			t.Fatal(err)
		}
		if len(zips) != i+1 {
			t.Errorf("after building %s alone: zips %q, want %d", a.name, zips, i+1)
		}
	}
	distB := t.TempDir()
	runScriptIn(t, srcB, buildEnv(distB), "build.sh")
	for _, a := range arches {
		name := "o2-extension-" + a.name + ".zip"
		got, err := os.ReadFile(filepath.Join(distA, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(distB, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs between two builds of the same sources (%d vs %d bytes)", name, len(got), len(want))
		}
	}
}

// runScriptIn runs dir/script with env and fails t unless it succeeds.
func runScriptIn(t *testing.T, dir string, env []string, script string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bash, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q in %s: %v\n%s%s", script, args, dir, err, stdout.String(), stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String()}
}

// copyTree copies the regular files under src to dst, leaving out
// dot-directories (.git) and dist, as a fresh clone would have them.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || rel == "dist") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func TestBuildScriptCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantOut  []string // in stdout
		wantErr  []string // in stderr
	}{
		{"help", []string{"help"}, nil, 0, []string{"Usage: ./build.sh", "BUILD_TARGETS", "DIST_DIR", "test ", "check ", "clean "}, nil},
		{"unknown subcommand", []string{"deploy"}, nil, 2, nil, []string{`unknown subcommand "deploy"`, "Usage: ./build.sh"}},
		{"two subcommands", []string{"clean", "build"}, nil, 2, nil, []string{"Usage: ./build.sh"}},
		{"unknown target", nil, []string{"BUILD_TARGETS=mips"}, 1, nil, []string{`unknown target "mips" (want x86_64 (or amd64) and/or arm64 (or aarch64))`}},
		{"version override", []string{"version"}, []string{"BUILD_VERSION=v1.2.3-rc.1"}, 0, []string{"v1.2.3-rc.1\n"}, nil},
		{"version unfit for -X", []string{"version"}, []string{"BUILD_VERSION=1.0 beta"}, 1, nil, []string{`version "1.0 beta"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := environ(append([]string{"DIST_DIR=" + t.TempDir()}, tt.env...)...)
			res := runScript(t.Context(), env, nil, "build.sh", tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			mustContain(t, "stdout", res.stdout, tt.wantOut...)
			mustContain(t, "stderr", res.stderr, tt.wantErr...)
		})
	}
}

// TestBuildVersionSources checks where the version comes from when
// BUILD_VERSION is unset: the VERSION file, else "dev".
func TestBuildVersionSources(t *testing.T) {
	t.Run("VERSION file in the checkout", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(root, "VERSION"))
		if err != nil {
			t.Fatal(err)
		}
		res := runScript(t.Context(), environ(), nil, "build.sh", "version")
		if res.code != 0 || res.stdout != string(want) {
			t.Errorf("version = %q (exit %d, %s), want the VERSION file's %q", res.stdout, res.code, res.stderr, want)
		}
		if !regexp.MustCompile(`^\d+\.\d+\.\d+\n$`).Match(want) {
			t.Errorf("VERSION = %q, want a release version x.y.z", want)
		}
	})
	// Outside a git work tree: a copy of build.sh in a temporary directory.
	for _, tt := range []struct{ name, file, want string }{
		{"VERSION file", "1.4.0\n", "1.4.0\n"},
		{"nothing", "", "dev\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			script, err := os.ReadFile(filepath.Join(root, "build.sh"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "build.sh"), script, 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.file != "" {
				if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.CommandContext(t.Context(), bash, filepath.Join(dir, "build.sh"), "version")
			cmd.Env = environ("GIT_CEILING_DIRECTORIES=" + filepath.Dir(dir))
			got, err := cmd.Output()
			if err != nil || string(got) != tt.want {
				t.Errorf("version = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestBuildLeavesHostBinary: the README runs ./dist/o2-extension
// --health-check right after ./build.sh, so build leaves a binary for this
// machine there, stamped with the version and the commit.
func TestBuildLeavesHostBinary(t *testing.T) {
	dist := builtDist(t)
	cmd := exec.CommandContext(t.Context(), filepath.Join(dist, "o2-extension"), "--version")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dist/o2-extension --version: %v\n%s", err, out)
	}
	git := exec.Command("git", "rev-parse", "--short=12", "HEAD")
	git.Dir = root
	head, err := git.Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	mustContain(t, "--version", string(out), "o2-extension "+testVersion+" (commit "+strings.TrimSpace(string(head)))
}

func TestBuildClean(t *testing.T) {
	dist := t.TempDir()
	mine := []string{"o2-extension-x86_64.zip", "o2-extension-arm64.zip", "o2-extension-x86_64.version", "o2-extension-arm64.version", "o2-extension"}
	for _, f := range append(mine, "notes.txt") {
		if err := os.WriteFile(filepath.Join(dist, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := runScript(t.Context(), environ("DIST_DIR="+dist), nil, "build.sh", "clean")
	if res.code != 0 {
		t.Fatalf("clean exited %d: %s", res.code, res.stderr)
	}
	for _, f := range mine {
		if _, err := os.Stat(filepath.Join(dist, f)); !os.IsNotExist(err) {
			t.Errorf("%s still there after clean (%v)", f, err)
		}
	}
	// clean removes only what build writes, whatever DIST_DIR names.
	if _, err := os.Stat(filepath.Join(dist, "notes.txt")); err != nil {
		t.Errorf("clean removed a file it does not own: %v", err)
	}
}
