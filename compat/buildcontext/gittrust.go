package buildcontext

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
)

// systemBundles are the CA bundle files Go's crypto/x509 tries on Linux.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// goTrustBundle makes git trust what Go (and so Kaniko's go-git) trusts
// when SSL_CERT_FILE or SSL_CERT_DIR are set: Kaniko's images point
// SSL_CERT_DIR at <kaniko dir>/ssl/certs, where users add private CAs, but
// git's TLS library reads neither variable. A GIT_SSL_CAINFO bundle is kept
// in. It returns "" when git's own defaults already match.
func goTrustBundle() (string, func(), error) {
	noop := func() {}
	certFile, certDirs := os.Getenv("SSL_CERT_FILE"), os.Getenv("SSL_CERT_DIR")
	if certFile == "" && certDirs == "" {
		return "", noop, nil
	}
	var files []string
	if gitBundle := os.Getenv("GIT_SSL_CAINFO"); gitBundle != "" {
		files = append(files, gitBundle)
	}
	if certFile != "" {
		files = append(files, certFile)
	} else {
		for _, f := range systemBundles {
			if _, err := os.Stat(f); err == nil {
				files = append(files, f)
				break
			}
		}
	}
	for _, dir := range filepath.SplitList(certDirs) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	var bundle bytes.Buffer
	for _, f := range files {
		// Like Go, unreadable files and non-certificate content are skipped.
		data, _ := os.ReadFile(f)
		for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
			if block.Type == "CERTIFICATE" {
				_ = pem.Encode(&bundle, block)
			}
		}
	}
	if bundle.Len() == 0 {
		return "", noop, nil
	}
	tmp, err := os.CreateTemp("", "kiln-git-ca-*.pem")
	if err != nil {
		return "", noop, err
	}
	_, writeErr := tmp.Write(bundle.Bytes())
	if err := errors.Join(writeErr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return "", noop, err
	}
	return tmp.Name(), func() { os.Remove(tmp.Name()) }, nil
}
