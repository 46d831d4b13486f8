// Command app is the corpus's Go application: a small registry client built from real modules
// (go-containerregistry's crane commands, cobra, golang.org/x/text), so that its build
// information lists the module versions a real Go binary's does.
package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/cmd/crane/cmd"
	"golang.org/x/text/language"
)

func main() {
	if tags, _, err := language.ParseAcceptLanguage(os.Getenv("ACCEPT_LANGUAGE")); err == nil && len(tags) > 0 {
		fmt.Fprintln(os.Stderr, "language:", tags[0])
	}
	if err := cmd.New("app", "app", nil).Execute(); err != nil {
		os.Exit(1)
	}
}
