// Command testregistry serves the test suite's in-process registry on its
// own, for `make demo` and manual runs. It prints host:port on stdout once
// it accepts connections and serves until interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kilnbuild/kiln/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testregistry:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	tlsDir := flag.String("tls-dir", "", "serve HTTPS; the CA (registry-ca.pem) and server certificate are written here")
	mtls := flag.Bool("mtls", false, "require client certificates (needs -tls-dir; client.pem and client-key.pem are written there)")
	user := flag.String("user", "", "require HTTP basic auth with this user")
	password := flag.String("password", "", "password for -user")
	seed := flag.Bool("seed-busybox", false, "preload busybox as library/busybox:latest and :1.36, for --registry-mirror")
	flag.Parse()

	if (*user == "") != (*password == "") {
		return fmt.Errorf("-user and -password must be given together")
	}
	if *mtls && *tlsDir == "" {
		return fmt.Errorf("-mtls needs -tls-dir to write the certificates into")
	}
	opts := []testenv.RegistryOption{testenv.WithAddr(*addr), testenv.WithErrorLog(os.Stderr)}
	if *tlsDir != "" {
		if err := os.MkdirAll(*tlsDir, 0o755); err != nil {
			return fmt.Errorf("-tls-dir: %w", err)
		}
		opts = append(opts, testenv.WithCertDir(*tlsDir), testenv.WithTLS())
	}
	if *mtls {
		opts = append(opts, testenv.WithMTLS())
	}
	if *user != "" {
		opts = append(opts, testenv.WithBasicAuth(*user, *password))
	}
	reg, err := testenv.NewRegistry(opts...)
	if err != nil {
		return err
	}
	defer reg.Close()

	if *seed {
		binary, err := testenv.BusyboxBinary()
		if err != nil {
			return err
		}
		img, err := testenv.BusyboxFrom(binary)
		if err != nil {
			return err
		}
		for _, path := range testenv.BusyboxMirrorTags {
			if err := reg.Seed(path, img); err != nil {
				return fmt.Errorf("seeding %s: %w", path, err)
			}
		}
	}
	fmt.Println(reg.Host)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	return nil
}
