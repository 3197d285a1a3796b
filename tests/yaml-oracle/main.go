// Command yaml-oracle prints, for each file named on the command line, the JSON documents
// kubectl would send for it: the stream is split by k8s.io/apimachinery's YAMLOrJSONDecoder
// (YAML documents converted by sigs.k8s.io/yaml), each document is trimmed, and empty or null
// documents are skipped, as cli-runtime's StreamVisitor does.
//
// Output: one JSON line per file, {"docs":[...]} or {"error":"..."}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

type result struct {
	Docs  []json.RawMessage `json:"docs,omitempty"`
	Error string            `json:"error,omitempty"`
}

func read(path string) result {
	f, err := os.Open(path)
	if err != nil {
		return result{Error: err.Error()}
	}
	defer f.Close()
	// 4096 is kubectl's buffer size (cli-runtime's StreamVisitor).
	d := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	docs := []json.RawMessage{}
	for {
		// json.RawMessage, like kubectl's runtime.RawExtension, is a json.Unmarshaler, so
		// sigs.k8s.io/yaml converts it without a target type.
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			if err == io.EOF {
				return result{Docs: docs}
			}
			return result{Error: err.Error()}
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		docs = append(docs, raw)
	}
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, path := range os.Args[1:] {
		line, err := json.Marshal(read(path))
		if err != nil {
			fmt.Fprintf(os.Stderr, "yaml-oracle: %s: %v\n", path, err)
			os.Exit(1)
		}
		out.Write(append(line, '\n'))
	}
}
