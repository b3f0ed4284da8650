//go:build tools

// Package kprofefe pins the build of kube-profefe's kprofefe
// (github.com/gianarb/kube-profefe/cmd/kprofefe), the collector the
// operator succeeds, for the bench's side-by-side run. Its source is not
// here: build.sh builds it from a checkout the user supplies, through a
// replace directive applied in a temporary copy of this module. go.mod and
// go.sum pin the versions kube-profefe's own go.mod selects (its build
// list, unchanged); this file only keeps `go mod tidy` from dropping them.
package kprofefe

import _ "github.com/gianarb/kube-profefe/cmd/kprofefe"
