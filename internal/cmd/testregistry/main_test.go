package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testregistry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

func TestServesTLSWithAuthAndSeededBusybox(t *testing.T) {
	bin := buildBinary(t)
	tlsDir := filepath.Join(t.TempDir(), "tls")
	cmd := exec.Command(bin, "-tls-dir", tlsDir, "-user", "demo", "-password", "pw", "-seed-busybox")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
	}()
	var host string
	select {
	case host = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("no address printed within 30s")
	}
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("printed %q, want 127.0.0.1:PORT", host)
	}

	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "registry-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("registry-ca.pem holds no certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/library/busybox/manifests/1.36", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("demo", "pw"); code != http.StatusOK {
		t.Fatalf("seeded busybox manifest: status %d", code)
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Fatalf("anonymous request: status %d, want 401", code)
	}
}

func TestRejectsUserWithoutPassword(t *testing.T) {
	out, err := exec.Command(buildBinary(t), "-user", "demo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-user and -password must be given together") {
		t.Fatalf("want a one-line flag error, got %v: %s", err, out)
	}
}
