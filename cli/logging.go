package cli

import (
	"fmt"
	"io"

	"github.com/kilnbuild/kiln/flagmap"
	"github.com/sirupsen/logrus"
)

// ConfigureLogging sets up logrus the way Kaniko's --verbosity, --log-format
// and --log-timestamp do, writing to out.
func ConfigureLogging(opts *flagmap.Options, out io.Writer) error {
	if err := flagmap.ValidateLogging(opts); err != nil {
		return err
	}
	level, err := logrus.ParseLevel(opts.Verbosity)
	if err != nil {
		return err
	}
	var formatter logrus.Formatter
	switch opts.LogFormat {
	case "text":
		formatter = &logrus.TextFormatter{DisableColors: true, FullTimestamp: opts.LogTimestamp}
	case "color":
		formatter = &logrus.TextFormatter{ForceColors: true, FullTimestamp: opts.LogTimestamp}
	case "json":
		formatter = &logrus.JSONFormatter{DisableTimestamp: !opts.LogTimestamp}
	default:
		return fmt.Errorf("log format %q has no formatter", opts.LogFormat)
	}
	logrus.SetOutput(out)
	logrus.SetLevel(level)
	logrus.SetFormatter(formatter)
	return nil
}
