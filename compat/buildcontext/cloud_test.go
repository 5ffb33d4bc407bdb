package buildcontext

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/kilnbuild/kiln/internal/testenv"
)

// noCloudCredentials keeps the SDKs from reading this machine's settings.
func noCloudCredentials(t *testing.T) {
	home := t.TempDir()
	for k, v := range map[string]string{
		"HOME": home, "AWS_CONFIG_FILE": filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_REGION": "", "CLOUDSDK_CONFIG": filepath.Join(home, "gcloud"),
		"GOOGLE_APPLICATION_CREDENTIALS": "", "AZURE_STORAGE_ACCESS_KEY": "",
	} {
		t.Setenv(k, v)
	}
}

func TestS3ContextFromGofakes3(t *testing.T) {
	noCloudCredentials(t)
	creds := testenv.AWSCredentials{AccessKeyID: "AKIDS3KILN", SecretAccessKey: "s3-secret-access-key"}
	fake := testenv.StartFakeS3(t, creds)
	fake.Put(t, "ctx", DefaultObject, sampleContext(t, true))
	fake.Put(t, "ctx", "apps/plain.tar", sampleContext(t, false))
	t.Setenv("S3_ENDPOINT", fake.URL)
	t.Setenv("S3_FORCE_PATH_STYLE", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)

	for _, url := range []string{"s3://ctx", "s3://ctx/", "s3://ctx/apps/plain.tar"} {
		got := fetchOK(t, Request{Context: url})
		readFile(t, filepath.Join(got.Dir, "Dockerfile"), "FROM scratch\nCOPY . /\n")
		readFile(t, filepath.Join(got.Dir, "deep/er/file.txt"), "deep")
	}
	fetchErr(t, Request{Context: "s3://ctx/missing.tar.gz"}, "--context s3://ctx/missing.tar.gz", "object missing.tar.gz does not exist in bucket ctx")
	fetchErr(t, Request{Context: "s3://nobucket/ctx.tar.gz"}, "bucket nobucket does not exist")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-s3-secret")
	msg := fetchErr(t, Request{Context: "s3://ctx"}, "access to s3://ctx/context.tar.gz denied (SignatureDoesNotMatch)", "AWS_ACCESS_KEY_ID")
	assertNoSecret(t, "wrong-s3-secret", "the error", msg)
	assertNoSecret(t, creds.SecretAccessKey, "the error", msg)
}

func TestS3ContextUnsafeEntriesRefused(t *testing.T) {
	noCloudCredentials(t)
	creds := testenv.AWSCredentials{AccessKeyID: "AKIDS3KILN", SecretAccessKey: "s3-secret-access-key"}
	fake := testenv.StartFakeS3(t, creds)
	fake.Put(t, "ctx", DefaultObject, makeTar(t, true, tarEntry{name: "../escape", body: "x"}))
	t.Setenv("S3_ENDPOINT", fake.URL)
	t.Setenv("S3_FORCE_PATH_STYLE", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	fetchErr(t, Request{Context: "s3://ctx"}, "../escape")
}

func TestGCSContextFromFakeGCSServer(t *testing.T) {
	noCloudCredentials(t)
	endpoint := testenv.StartFakeGoogleTokenEndpoint(t, "ya29.gcs-access-token")
	host, fake := testenv.StartFakeGCS(t, endpoint.AccessToken)
	fake.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "ctx", Name: DefaultObject}, Content: sampleContext(t, true)})
	fake.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "ctx", Name: "dir/app.tar"}, Content: sampleContext(t, false)})
	t.Setenv("STORAGE_EMULATOR_HOST", host)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", endpoint.ServiceAccountJSON(t, false))

	for _, req := range []Request{{Context: "gs://ctx"}, {Context: "gs://ctx/dir/app.tar"}, {Context: "gs://ctx", Flag: "--bucket"}} {
		got := fetchOK(t, req)
		readFile(t, filepath.Join(got.Dir, "bin/run.sh"), "#!/bin/sh\necho hi\n")
	}
	fetchErr(t, Request{Context: "gs://ctx/missing.tar.gz"}, "object missing.tar.gz does not exist in bucket ctx")
	fetchErr(t, Request{Context: "gs://nobucket"}, "bucket nobucket does not exist")

	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", endpoint.ServiceAccountJSON(t, true))
	msg := fetchErr(t, Request{Context: "gs://ctx"}, "--context gs://ctx", "token endpoint answered 400")
	assertNoSecret(t, endpoint.AccessToken, "the error", msg)

	// Credentials the storage rejects.
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	fetchErr(t, Request{Context: "gs://ctx"}, "access to gs://ctx/context.tar.gz denied (401 Unauthorized)")
}

func TestAzureBlobContextFromFake(t *testing.T) {
	noCloudCredentials(t)
	fake := testenv.StartFakeAzureBlob(t, "kilnctx")
	fake.Put("builds", DefaultObject, sampleContext(t, true))
	fake.Put("builds", "team/app.tar", sampleContext(t, false))
	proxy := testenv.StartProxy(t)
	proxy.Route(fake.Hostname, fake.Addr)
	client := &http.Client{Transport: proxy.Transport(fake.CA)}
	t.Setenv("AZURE_STORAGE_ACCESS_KEY", fake.Key)

	for _, url := range []string{fake.URL("builds", ""), fake.URL("builds", "team/app.tar")} {
		got := fetchOK(t, Request{Context: url, HTTPClient: client})
		readFile(t, filepath.Join(got.Dir, "deep/er/file.txt"), "deep")
	}
	fetchErr(t, Request{Context: fake.URL("builds", "missing.tar.gz"), HTTPClient: client}, "blob missing.tar.gz does not exist in container builds")
	fetchErr(t, Request{Context: fake.URL("nocontainer", "ctx.tar.gz"), HTTPClient: client}, "container nocontainer does not exist in storage account kilnctx")
	t.Setenv("AZURE_STORAGE_ACCESS_KEY", "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkhIQ==")
	msg := fetchErr(t, Request{Context: fake.URL("builds", ""), HTTPClient: client}, "denied", "AZURE_STORAGE_ACCESS_KEY")
	assertNoSecret(t, fake.Key, "the error", msg)
	assertNoSecret(t, "d3Jvbmcta2V5", "the error", msg)
}
