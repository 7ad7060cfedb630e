// Command dchain runs durable container-image delivery chains on Temporal:
// build → scan → evaluate → replicate → trigger. Each command file only
// parses flags and calls the library packages.
package main

import (
	"errors"
	"fmt"
	"os"
)

// exitError carries a process exit code (e.g. `run watch` ending Failed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	root := newRoot()
	err := handOver(root, os.Args[1:])
	if err == nil {
		err = root.Execute()
	}
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
