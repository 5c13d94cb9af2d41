#!/usr/bin/env bash
# build.sh: build, package and test the o2-extension Lambda layer.
set -euo pipefail
cd "$(dirname "$0")"

cmd=${1:-build}
case "$cmd" in
test)
	go vet ./...
	go test -race -count=1 ./...
	;;
*)
	go build ./...
	;;
esac
