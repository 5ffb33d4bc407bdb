package buildcontext

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"golang.org/x/oauth2"
	googleauth "golang.org/x/oauth2/google"
)

// DefaultObject is the tarball Kaniko reads when a bucket URL names no object.
const DefaultObject = "context.tar.gz"

// BucketAndObject splits "bucket/path/to/object" as Kaniko does; an empty
// object becomes DefaultObject.
func BucketAndObject(rest string) (bucket, object string) {
	bucket, object, _ = strings.Cut(rest, "/")
	if object == "" {
		object = DefaultObject
	}
	return bucket, object
}

const cloudFix = "upload the context as a gzip (or plain) tarball there, or fix the URL"

// fetchS3 downloads s3://bucket/object with the AWS default credential
// chain; S3_ENDPOINT and S3_FORCE_PATH_STYLE select an S3-compatible store.
func fetchS3(ctx context.Context, rest, dir string) error {
	bucket, object := BucketAndObject(rest)
	if bucket == "" {
		return errors.New("no bucket in the URL; write s3://<bucket>/<path to a tarball>")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading the AWS configuration: %w; fix AWS_PROFILE or AWS_CONFIG_FILE", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint := os.Getenv("S3_ENDPOINT"); endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = os.Getenv("S3_FORCE_PATH_STYLE") == "true"
	})
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(object)})
	if err != nil {
		return s3Error(err, bucket, object)
	}
	defer out.Body.Close()
	return describeTarError(extractTar(out.Body, dir), cloudFix)
}

func s3Error(err error, bucket, object string) error {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("downloading s3://%s/%s: %w; check S3_ENDPOINT and that the executor can reach it", bucket, object, innerURLError(err))
	}
	switch apiErr.ErrorCode() {
	case "NoSuchBucket":
		return fmt.Errorf("bucket %s does not exist; create it or fix the URL", bucket)
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("object %s does not exist in bucket %s; %s", object, bucket, cloudFix)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "Forbidden":
		return fmt.Errorf("access to s3://%s/%s denied (%s); give the executor AWS credentials that may read it (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, IRSA, AWS_PROFILE)", bucket, object, apiErr.ErrorCode())
	}
	return fmt.Errorf("downloading s3://%s/%s: %s", bucket, object, apiErr.ErrorCode())
}

const gcsReadScope = "https://www.googleapis.com/auth/devstorage.read_only"

// fetchGCS downloads gs://bucket/object through Cloud Storage's JSON API,
// authenticated with Application Default Credentials when there are any;
// STORAGE_EMULATOR_HOST points it at an emulator.
func fetchGCS(ctx context.Context, rest, dir string, client *http.Client) error {
	bucket, object := BucketAndObject(rest)
	if bucket == "" {
		return errors.New("no bucket in the URL; write gs://<bucket>/<path to a tarball>")
	}
	base := "https://storage.googleapis.com"
	if emulator := os.Getenv("STORAGE_EMULATOR_HOST"); emulator != "" {
		base = emulator
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
	}
	if client == nil {
		client = http.DefaultClient
	}
	if creds, err := googleauth.FindDefaultCredentials(ctx, gcsReadScope); err == nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
		client = oauth2.NewClient(ctx, creds.TokenSource)
	}
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		var tokenErr *oauth2.RetrieveError
		switch {
		case errors.As(err, &tokenErr) && tokenErr.Response != nil:
			return nil, fmt.Errorf("getting an access token from Application Default Credentials: the token endpoint answered %s; check the service account key (GOOGLE_APPLICATION_CREDENTIALS) or the workload identity binding", tokenErr.Response.Status)
		case err != nil:
			return nil, fmt.Errorf("downloading gs://%s/%s: %w; check that the executor can reach Cloud Storage", bucket, object, innerURLError(err))
		}
		return resp, nil
	}
	resp, err := get("/storage/v1/b/" + url.PathEscape(bucket) + "/o/" + url.PathEscape(object) + "?alt=media")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return describeTarError(extractTar(resp.Body, dir), cloudFix)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("access to gs://%s/%s denied (%s); give the executor Application Default Credentials that may read it (GOOGLE_APPLICATION_CREDENTIALS, workload identity)", bucket, object, resp.Status)
	case http.StatusNotFound:
		bucketResp, err := get("/storage/v1/b/" + url.PathEscape(bucket))
		if err != nil {
			return err
		}
		bucketResp.Body.Close()
		if bucketResp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("bucket %s does not exist; create it or fix the URL", bucket)
		}
		return fmt.Errorf("object %s does not exist in bucket %s; %s", object, bucket, cloudFix)
	}
	return fmt.Errorf("downloading gs://%s/%s: Cloud Storage answered %s", bucket, object, resp.Status)
}

// AzureBlobLocation is an Azure Blob URL split the way Kaniko reads it.
type AzureBlobLocation struct {
	Account, ServiceURL, Container, Blob string
}

// ParseAzureBlobURL splits https://<account>.blob.<suffix>/<container>/<blob>;
// an empty blob becomes DefaultObject.
func ParseAzureBlobURL(raw string) (AzureBlobLocation, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return AzureBlobLocation{}, err
	}
	account, _, _ := strings.Cut(u.Hostname(), ".")
	container, blob := BucketAndObject(strings.TrimPrefix(u.Path, "/"))
	if container == "" {
		return AzureBlobLocation{}, errors.New("no container in the URL; write https://<account>.blob.core.windows.net/<container>/<path to a tarball>")
	}
	return AzureBlobLocation{Account: account, ServiceURL: u.Scheme + "://" + u.Host + "/", Container: container, Blob: blob}, nil
}

// fetchAzure downloads an Azure blob, signed with the account's shared key
// from AZURE_STORAGE_ACCESS_KEY (anonymous without it: public containers).
func fetchAzure(ctx context.Context, rawURL, dir string, httpClient *http.Client) error {
	loc, err := ParseAzureBlobURL(rawURL)
	if err != nil {
		return err
	}
	opts := &azblob.ClientOptions{}
	opts.Retry.MaxRetries = 2
	if httpClient != nil {
		opts.Transport = httpClient
	}
	var client *azblob.Client
	if key := os.Getenv("AZURE_STORAGE_ACCESS_KEY"); key != "" {
		cred, err := azblob.NewSharedKeyCredential(loc.Account, key)
		if err != nil {
			return fmt.Errorf("AZURE_STORAGE_ACCESS_KEY is not a storage account key (%v); set the account's base64 access key", errors.Unwrap(err))
		}
		client, err = azblob.NewClientWithSharedKeyCredential(loc.ServiceURL, cred, opts)
		if err != nil {
			return err
		}
	} else if client, err = azblob.NewClientWithNoCredential(loc.ServiceURL, opts); err != nil {
		return err
	}
	resp, err := client.DownloadStream(ctx, loc.Container, loc.Blob, nil)
	if err != nil {
		return azureError(err, loc)
	}
	defer resp.Body.Close()
	return describeTarError(extractTar(resp.Body, dir), cloudFix)
}

func azureError(err error, loc AzureBlobLocation) error {
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return fmt.Errorf("container %s does not exist in storage account %s; create it or fix the URL", loc.Container, loc.Account)
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return fmt.Errorf("blob %s does not exist in container %s; %s", loc.Blob, loc.Container, cloudFix)
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure, bloberror.NoAuthenticationInformation, bloberror.InsufficientAccountPermissions):
		return fmt.Errorf("access to blob %s in container %s denied; set AZURE_STORAGE_ACCESS_KEY to a key of storage account %s", loc.Blob, loc.Container, loc.Account)
	}
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return fmt.Errorf("downloading blob %s: Azure Storage answered %d %s", loc.Blob, respErr.StatusCode, respErr.ErrorCode)
	}
	return fmt.Errorf("downloading blob %s: %w; check that the executor can reach %s", loc.Blob, innerURLError(err), loc.ServiceURL)
}
