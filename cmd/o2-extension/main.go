// Command o2-extension is an AWS Lambda extension that ships a function's logs
// and the platform's telemetry to OpenObserve.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	fmt.Fprintln(os.Stderr, "o2-extension", version)
}
