module profefe-operator/capture/fixturesgen

go 1.26
