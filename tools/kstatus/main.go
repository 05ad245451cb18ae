// Command kstatus prints the kstatus verdict (the status computation Flux, Argo CD's
// kstatus-based checks and Helm 4 use) of one Kubernetes object read as JSON from stdin:
// a line `STATUS<TAB>message`, e.g. `Current	Resource is current`.
package main

import (
	"fmt"
	"io"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading stdin:", err)
		os.Exit(2)
	}
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(raw, &obj); err != nil {
		fmt.Fprintln(os.Stderr, "stdin is not a JSON object:", err)
		os.Exit(2)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		fmt.Fprintln(os.Stderr, "computing status:", err)
		os.Exit(1)
	}
	fmt.Printf("%s\t%s\n", res.Status, res.Message)
}
