package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority whose PEM certificate is on disk,
// so it can be handed to the executor (--registry-certificate) and BuildKit.
type CA struct {
	CertFile string
	Pool     *x509.CertPool
	cert     *x509.Certificate
	key      crypto.Signer
	dir      string
}

// KeyPair names a PEM certificate and its private key on disk.
type KeyPair struct {
	CertFile string
	KeyFile  string
}

// NewCA creates a CA and writes <dir>/<name>.pem (mode 0644).
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"kiln test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certFile := filepath.Join(dir, name+".pem")
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{CertFile: certFile, Pool: pool, cert: cert, key: key, dir: dir}, nil
}

// NewTestCA is NewCA in a directory every user can read, removed after the test.
func NewTestCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(ReadableTempDir(t), name)
	if err != nil {
		t.Fatalf("testenv: creating CA %s: %v", name, err)
	}
	return ca
}

// IssueServer writes <name>.pem and <name>-key.pem next to the CA: a server
// certificate valid for the given DNS names and IP addresses.
func (ca *CA) IssueServer(name string, hosts ...string) (KeyPair, error) {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, hosts)
}

// IssueClient writes a client certificate for mTLS next to the CA.
func (ca *CA) IssueClient(name string) (KeyPair, error) {
	return ca.issue(name, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(name string, usage x509.ExtKeyUsage, hosts []string) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"kiln test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return KeyPair{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	pair := KeyPair{
		CertFile: filepath.Join(ca.dir, name+".pem"),
		KeyFile:  filepath.Join(ca.dir, name+"-key.pem"),
	}
	if err := writePEM(pair.CertFile, "CERTIFICATE", der, 0o644); err != nil {
		return KeyPair{}, err
	}
	// Readable by all: test keys are handed to processes running as the non-root user.
	if err := writePEM(pair.KeyFile, "PRIVATE KEY", keyDER, 0o644); err != nil {
		return KeyPair{}, err
	}
	return pair, nil
}

// TLSCertificate loads the pair for use in a tls.Config.
func (p KeyPair) TLSCertificate() (tls.Certificate, error) {
	return tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Chmod(path, mode)
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// StartTLSServer serves handler over HTTPS on 127.0.0.1 with a certificate
// from a fresh CA (for context downloads and other non-registry servers);
// clients trust it through the returned CA's Pool or CertFile. hostnames
// are added to the certificate (for a server reached through a Proxy).
func StartTLSServer(t testing.TB, handler http.Handler, hostnames ...string) (*httptest.Server, *CA) {
	t.Helper()
	ca := NewTestCA(t, "server-ca")
	pair, err := ca.IssueServer("server", append([]string{"127.0.0.1"}, hostnames...)...)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ca
}
