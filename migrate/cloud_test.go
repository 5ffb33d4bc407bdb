package migrate

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// TestDryRunNamesCloudCredentialSources: for each destination the report
// names the helper and the variables that would answer, and for an s3://
// context the credentials and endpoint it is read with; never a value.
func TestDryRunNamesCloudCredentialSources(t *testing.T) {
	home := t.TempDir()
	creds := testenv.AWSCredentials{AccessKeyID: "AKIDDRYRUN", SecretAccessKey: "dry-run-secret-key"}
	s3 := testenv.StartFakeS3(t, creds)
	var archive bytes.Buffer
	gz := gzip.NewWriter(&archive)
	tw := tar.NewWriter(gz)
	content := "FROM scratch\nCOPY . /\n"
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	tw.Write([]byte(content))
	tw.Close()
	gz.Close()
	s3.Put(t, "jobs", "context.tar.gz", archive.Bytes())
	for k, v := range map[string]string{
		"HOME": home, "AWS_CONFIG_FILE": filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": creds.SecretAccessKey,
		"S3_ENDPOINT": s3.URL, "S3_FORCE_PATH_STYLE": "true", "GOOGLE_APPLICATION_CREDENTIALS": filepath.Join(home, "sa.json"),
		"KANIKO_CORP_EXAMPLE_USER": "builder", "KANIKO_CORP_EXAMPLE_PASSWORD": "env-helper-password",
	} {
		t.Setenv(k, v)
	}
	const ecr, gar, corp = "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "europe-docker.pkg.dev", "registry.corp.example"
	args := []string{"--context", "s3://jobs/", "--destination", ecr + "/app:1", "--destination", gar + "/p/app:1",
		"--destination", corp + "/app:1", "--kaniko-dir", t.TempDir()}
	m := &Migrator{Probe: readyProbe(t)}
	text, _ := dryRunCase{args: args}.run(t, m, "")
	assertLines(t, text,
		"Context credentials: AWS_ACCESS_KEY_ID, endpoint S3_ENDPOINT="+s3.URL+" (path style)",
		"[ok] "+ecr+" (push): credential helper ecr: ECR token from AWS_ACCESS_KEY_ID",
		"[ok] "+gar+" (push): credential helper google: Application Default Credentials from GOOGLE_APPLICATION_CREDENTIALS ("+filepath.Join(home, "sa.json")+")",
		"[ok] "+corp+" (push): credential helper env (KANIKO_CORP_EXAMPLE_USER and KANIKO_CORP_EXAMPLE_PASSWORD)",
	)
	for _, secret := range []string{creds.SecretAccessKey, "env-helper-password"} {
		if strings.Contains(text, secret) {
			t.Errorf("the report contains a secret:\n%s", text)
		}
	}

	// --credential-helpers=ecr leaves Google and the env variables unused.
	text, _ = dryRunCase{args: append(args, "--credential-helpers=ecr")}.run(t, m, "")
	assertLines(t, text,
		"[ok] "+ecr+" (push): credential helper ecr",
		"[missing] "+gar+" (push): no credentials for "+gar,
		"[missing] "+corp+" (push): no credentials for "+corp,
	)
}
