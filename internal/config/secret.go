package config

import (
	"fmt"
	"regexp"
	"strings"
)

// The credential can come from Secrets Manager or SSM Parameter Store
// instead of O2_AUTHORIZATION_HEADER. Only the shape of the ARN or name is
// judged here; whether it exists, and what it holds, is known only when it
// is fetched at run time.

// regionPattern is the shape of an AWS region name, e.g. eu-west-1,
// us-gov-east-1, ap-southeast-4.
var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// ssmNamePattern is what SSM allows in a parameter name (a-z, A-Z, 0-9,
// "_", ".", "-" and "/" for the hierarchy).
var ssmNamePattern = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// checkARN checks arn:partition:service:region:account:resource for the
// given service and resource prefix, naming the variable in its message.
func checkARN(name, v, service, resource, example string) error {
	parts := strings.SplitN(v, ":", 6)
	switch {
	case len(parts) < 6 || parts[0] != "arn" || !strings.HasPrefix(parts[1], "aws"):
		return fmt.Errorf("%s: %s is not an ARN (e.g. %s)", name, quote(v), example)
	case parts[2] != service:
		return fmt.Errorf("%s: %s is an ARN of %s, not of %s (e.g. %s)", name, quote(v), quote(parts[2]), service, example)
	case !regionPattern.MatchString(parts[3]):
		return fmt.Errorf("%s: %s is not a region in the ARN %s (e.g. eu-west-1)", name, quote(parts[3]), quote(v))
	case len(parts[4]) != 12 || strings.Trim(parts[4], "0123456789") != "":
		return fmt.Errorf("%s: %s is not a 12-digit account id in the ARN %s", name, quote(parts[4]), quote(v))
	case !strings.HasPrefix(parts[5], resource) || len(parts[5]) == len(resource):
		return fmt.Errorf("%s: the ARN %s does not name a %s (e.g. %s)", name, quote(v), strings.TrimRight(resource, ":/"), example)
	}
	return nil
}

// checkSecretARN accepts "" (unset) or a Secrets Manager secret ARN.
func checkSecretARN(v string) error {
	if v == "" {
		return nil
	}
	return checkARN(envSecretARN, v, "secretsmanager", "secret:",
		"arn:aws:secretsmanager:eu-west-1:123456789012:secret:o2/ingest-AbCdEf")
}

// checkSSMParameter accepts "" (unset), a parameter name, or a parameter
// ARN.
func checkSSMParameter(v string) error {
	switch {
	case v == "":
		return nil
	case strings.HasPrefix(v, "arn:"):
		return checkARN(envSSMParameter, v, "ssm", "parameter/",
			"arn:aws:ssm:eu-west-1:123456789012:parameter/o2/ingest")
	case len(v) > 2048 || !ssmNamePattern.MatchString(v):
		return fmt.Errorf("%s: %s is not a parameter name (letters, digits and _ . - /, e.g. /o2/ingest) or ARN", envSSMParameter, quote(v))
	}
	return nil
}

// AuthSource says where the credential comes from, for logs and
// --health-check: "O2_AUTHORIZATION_HEADER", "Secrets Manager <ARN>" or
// "SSM parameter <name>". It never shows the value.
func (c Config) AuthSource() string {
	switch {
	case c.AuthSecretARN != "":
		return "Secrets Manager " + c.AuthSecretARN
	case c.AuthSSMParameter != "":
		return "SSM parameter " + c.AuthSSMParameter
	default:
		return envAuthorization
	}
}
