// Module bench holds the benchmarks of profefe-operator (DESIGN.md §10). It
// reuses the e2e harness (real kube-apiserver, etcd, profefe, pproftarget)
// without editing e2e/.
module profefe-operator/bench

go 1.24.0

require profefe-operator/e2e v0.0.0

replace profefe-operator/e2e => ../e2e
