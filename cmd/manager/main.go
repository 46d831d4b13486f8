// Command vigil-manager runs Vigil's manager: the observe-only admission webhook on every replica
// and, on the elected leader, the reconcilers that scan images and keep the findings.
package main

import (
	"os"

	"github.com/vigil-dev/vigil/cmd/manager/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:]))
}
