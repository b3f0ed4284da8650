// Module e2e is the end-to-end harness of profefe-operator: it runs the real
// kube-apiserver, etcd, kubectl and profefe (built by tools/build.sh) and real
// Go pprof programs (cmd/pproftarget), all on 127.0.0.0/8.
module profefe-operator/e2e

go 1.24.0

require github.com/google/pprof v0.0.0-20241029153458-d1b30febd7db
