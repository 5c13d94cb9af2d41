// Package layer tests build.sh and deploy.sh end to end: the layer zips as
// Lambda reads them, their reproducibility, and a deployment of both
// architectures to a moto_server through the real aws CLI.
package layer
