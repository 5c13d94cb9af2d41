#!/usr/bin/env bash
# build.sh: build, package, check and test the o2-extension Lambda layer.
# Run "./build.sh help" for the subcommands and variables.
set -euo pipefail

# A relative DIST_DIR is the caller's; then work from the repository
# root whatever the caller's directory.
if [[ -n ${DIST_DIR:-} && $DIST_DIR != /* ]]; then
	DIST_DIR=$PWD/$DIST_DIR
fi
case "${BASH_SOURCE[0]}" in
*/*) cd "${BASH_SOURCE[0]%/*}" ;;
esac

# The module's main package and the name the layer zips are built from.
readonly pkg=./cmd/o2-extension
readonly name=o2-extension

usage() {
	cat <<'EOF'
Usage: ./build.sh [SUBCOMMAND]

Subcommands:
  build    (default) build the extension for linux/amd64 and linux/arm64 and
           package DIST_DIR/o2-extension-x86_64.zip and o2-extension-arm64.zip,
           each holding extensions/o2-extension and the exec wrapper
           o2-otel-wrapper (/opt/o2-otel-wrapper, for AWS_LAMBDA_EXEC_WRAPPER),
           both mode 0755; check each zip (layout, run bits, ELF machine,
           static, the wrapper's bytes) and print its size; also
           leave DIST_DIR/o2-extension, built for this machine, to run
           --health-check locally
  test     the project's full test suite: check, go test -race ./...
           (the end-to-end package ./tests alone, after the rest), then a
           short fuzz of the telemetry decoder and of the OTLP receiver's
           (FUZZTIME, default 10s each)
  check    go vet ./... (and in the tests/otelfunc module) and gofmt (fails
           listing unformatted files)
  clean    remove the zips, version files and local binary from DIST_DIR
  version  print the version the build would stamp into the binary (the
           commit is stamped next to it)
  help     print this help

Variables:
  BUILD_TARGETS  x86_64 (or amd64), arm64 (or aarch64), or both
                 (default: "x86_64 arm64")
  DIST_DIR       where the zips go (default: dist in the repository)
  BUILD_VERSION  the release version to stamp (default: the VERSION file,
                 else "dev")
  BUILD_COMMIT   the commit to stamp next to it (default: git rev-parse
                 --short=12 HEAD, with -dirty for uncommitted changes, in a
                 git checkout; else none)

The zips are reproducible: the same commit, Go version and BUILD_VERSION give
byte-identical zips (fixed timestamps and entry order, -trimpath).
EOF
}

die() {
	echo "build.sh: $*" >&2
	exit 1
}

# need_go makes sure the go command is found: CI and our machines have it
# in /usr/local/go/bin, which is not always on PATH.
need_go() {
	if ! command -v go >/dev/null 2>&1; then
		if [[ -x /usr/local/go/bin/go ]]; then
			PATH=/usr/local/go/bin:$PATH
		else
			die "the go command is not in PATH (install Go $(go_version) or later from https://go.dev/dl/)"
		fi
	fi
}

# go_version prints the Go version go.mod requires (its go line).
go_version() {
	local line
	while read -r line; do
		if [[ $line == "go "* ]]; then
			printf '%s\n' "${line#go }"
			return
		fi
	done <go.mod
	echo 1.26
}

# version prints the release version to stamp: BUILD_VERSION, else the
# VERSION file, else "dev". It refuses characters that -ldflags -X would
# split on.
version() {
	local v=${BUILD_VERSION:-}
	if [[ -z $v && -f VERSION ]]; then
		read -r v <VERSION || true
	fi
	v=${v:-dev}
	if [[ ! $v =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
		die "version \"$v\" may only hold letters, digits and . _ + -"
	fi
	printf '%s\n' "$v"
}

# commit prints the commit to stamp next to the version: BUILD_COMMIT, else
# the checkout's HEAD (with -dirty for uncommitted changes), else nothing
# (a release tarball has no .git).
commit() {
	local c=${BUILD_COMMIT:-}
	if [[ -z $c ]] && command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		c=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
		if [[ -n $c && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
			c=$c-dirty
		fi
	fi
	if [[ -n $c && ! $c =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
		die "commit \"$c\" may only hold letters, digits and . _ + -"
	fi
	printf '%s\n' "$c"
}

# targets prints the Lambda architectures to build, one a line, from
# BUILD_TARGETS (spaces or commas; Go's names are accepted too).
targets() {
	local list=${BUILD_TARGETS:-x86_64 arm64} t
	for t in ${list//,/ }; do
		case $t in
		x86_64 | amd64) echo x86_64 ;;
		arm64 | aarch64) echo arm64 ;;
		*) die "BUILD_TARGETS: unknown target \"$t\" (want x86_64 (or amd64) and/or arm64 (or aarch64))" ;;
		esac
	done | awk '!seen[$0]++' # keep the order, drop repeats
}

build() {
	need_go
	local v c ldflags tags dist stage arches arch goarch hostos hostarch
	v=$(version)
	c=$(commit)
	ldflags="-s -w -X main.version=$v${c:+ -X main.commit=$c}"
	# nethttpomithttp2: net/http without its bundled HTTP/2, which the
	# extension never speaks (see newTransport in internal/openobserve):
	# a binary 0.5 MB smaller, less of it resident.
	tags=nethttpomithttp2
	arches=$(targets)
	[[ -n $arches ]] || die "BUILD_TARGETS names no target"
	dist=${DIST_DIR:-dist}
	mkdir -p "$dist"
	stage=$(mktemp -d "${TMPDIR:-/tmp}/o2-build.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $stage is local
	trap "rm -rf '$stage'" EXIT

	for arch in $arches; do
		case $arch in
		x86_64) goarch=amd64 ;;
		arm64) goarch=arm64 ;;
		esac
		local zip=$dist/$name-$arch.zip
		echo "==> $name $v${c:+ (commit $c)} for linux/$goarch"
		# CGO_ENABLED=0: a static binary, as Lambda's /opt holds no libc of
		# ours. -trimpath and -buildvcs=false: no path or checkout state in
		# the binary, so it depends on the sources alone. GOAMD64/GOARM64
		# pinned to the baseline every Lambda host runs (and the default),
		# so a developer's own setting changes nothing.
		env CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOAMD64=v1 GOARM64=v8.0 \
			go build -trimpath -buildvcs=false -tags "$tags" \
			-ldflags "$ldflags" \
			-o "$stage/$arch/$name" "$pkg"
		go run ./cmd/mkzip -bin "$stage/$arch/$name" -o "$stage/$arch.zip" \
			-comment "$name $v linux/$goarch"
		# Check before publishing to DIST_DIR: a bad zip never lands there.
		go run ./cmd/checkzip -arch "$arch" "$stage/$arch.zip" |
			sed "s|$stage/$arch.zip|$zip|"
		mv -f "$stage/$arch.zip" "$zip"
		# deploy.sh puts the version in the layer's description.
		printf '%s\n' "$v" >"$dist/$name-$arch.version"
	done
	# A binary for this machine, for ./dist/o2-extension --health-check: the
	# Linux one just built when it fits, else one more build.
	hostos=$(go env GOOS)
	hostarch=$(go env GOARCH)
	case $hostos/$hostarch in
	linux/amd64) arch=x86_64 ;;
	linux/arm64) arch=arm64 ;;
	*) arch= ;;
	esac
	if [[ -n $arch && -f $stage/$arch/$name ]]; then
		cp -f "$stage/$arch/$name" "$dist/$name"
	else
		echo "==> $name $v for $hostos/$hostarch (this machine)"
		env CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags "$tags" -ldflags "$ldflags" -o "$dist/$name" "$pkg"
	fi
	echo "==> done: $(for arch in $arches; do printf '%s ' "$dist/$name-$arch.zip"; done)"
	echo "    and $dist/$name for this machine ($hostos/$hostarch): $dist/$name --health-check"
}

check() {
	need_go
	echo "==> go vet ./..."
	go vet ./...
	# The OpenTelemetry SDK function of the e2e tests is its own module
	# (its exporters cannot link beside the extension's protobuf packages).
	echo "==> go vet ./... in tests/otelfunc"
	(cd tests/otelfunc && go vet ./...)
	echo "==> gofmt"
	# Every .go file the go command would see: not under testdata, vendor,
	# or a directory starting with . or _ (the go tool ignores those).
	local bad
	bad=$(find . \( -name testdata -o -name vendor -o -name '.?*' -o -name '_*' \) -prune \
		-o -type f -name '*.go' -exec gofmt -l {} +)
	if [[ -n $bad ]]; then
		echo "build.sh: these files are not gofmt-ed (run gofmt -w on them):" >&2
		echo "$bad" >&2
		exit 1
	fi
}

clean() {
	local dist=${DIST_DIR:-dist}
	# Only what build writes, so a DIST_DIR pointing anywhere is safe.
	rm -f "$dist/$name"-*.zip "$dist/$name"-*.version "$dist/$name"
	if [[ -d $dist ]]; then
		rmdir "$dist" 2>/dev/null || true
	fi
	echo "==> cleaned $dist"
}

cmd=${1:-build}
if [[ $# -gt 1 ]]; then
	usage >&2
	exit 2
fi
case $cmd in
build) build ;;
test)
	check
	# Every package of ./..., in two steps: the end-to-end package ./tests
	# alone after the others, so that its real-time deadlines (SHUTDOWN,
	# the holds of /next) are not measured beside the layer build and
	# deploy tests.
	echo "==> go test -race -count=1 ./... (all but ./tests)"
	go test -race -count=1 $(go list ./... | grep -v '/tests$')
	echo "==> go test -race -count=1 ./tests (the end-to-end tests, alone)"
	go test -race -count=1 ./tests
	# A short fuzz of the telemetry decoder on top of its seed corpus
	# (internal/telemetry/testdata/fuzz); run it longer by hand with
	# FUZZTIME=10m ./build.sh test.
	echo "==> go test -fuzz=FuzzDecodeBatch -fuzztime=${FUZZTIME:-10s} ./internal/telemetry"
	go test -run='^$' -fuzz=FuzzDecodeBatch -fuzztime="${FUZZTIME:-10s}" ./internal/telemetry
	# And of the OTLP receiver's decoding (protobuf and JSON, split and
	# partial_success accounting).
	echo "==> go test -fuzz=FuzzDecode -fuzztime=${FUZZTIME:-10s} ./internal/otlpreceiver"
	go test -run='^$' -fuzz='^FuzzDecode$' -fuzztime="${FUZZTIME:-10s}" ./internal/otlpreceiver
	;;
check) check ;;
clean) clean ;;
version) version ;;
help | -h | --help) usage ;;
*)
	echo "build.sh: unknown subcommand \"$cmd\"" >&2
	usage >&2
	exit 2
	;;
esac
