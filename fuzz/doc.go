// Package fuzz holds the native Go fuzz targets for every parser that reads
// bytes from the network or from the user: CSTP frames, CONNECT reply
// headers and the other decoders ocnet exposes to a headend or a local
// client. It contains no production code; each target lives in a _test.go
// file named after the parser and is seeded from real captures under
// testdata/fuzz/<FuzzName>/, with secrets replaced.
//
// A plain "go test ./fuzz" replays the seeds as regression tests. To fuzz
// one target for hours, name it and give a time budget; go test accepts a
// single target per run:
//
//	go test ./fuzz -run '^$' -fuzz '^FuzzCSTPFrame$' -fuzztime 4h
//	go test ./fuzz -run '^$' -fuzz '^FuzzConnectHeaders$' -fuzztime 4h -parallel 4
//
// New crashers are written to testdata/fuzz/<FuzzName>/ and replayed by
// every later "go test ./fuzz" run; fix the parser, then commit the file as
// a regression seed. The growing working corpus stays in $(go env GOCACHE)/fuzz.
package fuzz
