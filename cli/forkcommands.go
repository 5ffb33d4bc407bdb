package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/spf13/cobra"

	"github.com/kilnbuild/kiln/flagmap"
)

// dockerHubAuthKey is the config.json key docker and Kaniko use for Docker Hub.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// forkCommands are the maintained fork's subcommands, as flagmap.Subcommands
// lists them.
func forkCommands(getenv func(string) (string, bool)) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range flagmap.Subcommands {
		name, _, _ := strings.Cut(sub.Use, " ")
		cmd := &cobra.Command{Use: sub.Use, Short: sub.Usage, SilenceErrors: true, SilenceUsage: true}
		switch {
		case name == "login":
			addLogin(cmd, getenv)
		case sub.Disposition == flagmap.Unsupported:
			reason := sub.Reason
			cmd.DisableFlagParsing = true
			cmd.RunE = func(*cobra.Command, []string) error {
				return fmt.Errorf("executor %s is not supported by kiln: %s", name, reason)
			}
		}
		out = append(out, cmd)
	}
	return out
}

// addLogin is the fork's `executor login`: it stores the credential in the
// docker config kiln reads ($DOCKER_CONFIG, default /kaniko/.docker).
func addLogin(cmd *cobra.Command, getenv func(string) (string, bool)) {
	var user, password string
	var passwordStdin bool
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name for the registry")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password for the registry")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		switch {
		case user == "":
			return errors.New("executor login: --username is required")
		case password != "" && passwordStdin:
			return errors.New("executor login: give --password or --password-stdin, not both")
		case password == "" && !passwordStdin:
			return errors.New("executor login: give the password with --password-stdin (or --password)")
		}
		if passwordStdin {
			in, err := io.ReadAll(cmd.InOrStdin())
			if err != nil {
				return fmt.Errorf("executor login: reading the password from standard input: %v", err)
			}
			password = strings.TrimRight(string(in), "\r\n")
			if password == "" {
				return errors.New("executor login: the password on standard input is empty")
			}
		}
		inv, err := flagmap.Parse(nil, getenv)
		if err != nil {
			return err
		}
		dir := inv.Options.Env.DockerConfig
		cf, err := config.Load(dir)
		if err != nil {
			return fmt.Errorf("executor login: reading %s/config.json: %v", dir, err)
		}
		registry := args[0]
		if registry == "docker.io" || registry == "index.docker.io" {
			registry = dockerHubAuthKey
		}
		auth := types.AuthConfig{ServerAddress: registry, Username: user, Password: password}
		if err := cf.GetCredentialsStore(registry).Store(auth); err != nil {
			return fmt.Errorf("executor login: storing the credential for %s: %v", registry, err)
		}
		if err := cf.Save(); err != nil {
			return fmt.Errorf("executor login: writing %s/config.json: %v", dir, err)
		}
		return nil
	}
}
