#!/usr/bin/env bash
# deploy.sh: publish the o2-extension layer zips that build.sh made as
# Lambda layer versions, list them, or delete them.
# Run "./deploy.sh help" for the subcommands and variables.
set -euo pipefail

# Everything before the aws CLI check uses builtins only, so that check
# (and "help") works with a bare PATH.

# Relative DIST_DIR and DEPLOY_INFO_DIR are the caller's; the defaults are
# in the repository, where this script lives.
for v in DIST_DIR DEPLOY_INFO_DIR; do
	if [[ -n ${!v:-} && ${!v} != /* ]]; then
		printf -v "$v" '%s' "$PWD/${!v}"
	fi
done
case "${BASH_SOURCE[0]}" in
*/*) cd "${BASH_SOURCE[0]%/*}" ;;
esac
readonly dist=${DIST_DIR:-$PWD/dist}
readonly info_dir=${DEPLOY_INFO_DIR:-$PWD}
readonly name=o2-extension

# The runtimes a layer version is tagged with. Lambda allows at most 15
# (publish-layer-version's CompatibleRuntimes), so the list is the newest
# runtimes that run extensions: the deprecated or soon deprecated ones
# (python3.9, nodejs20.x, ruby3.2) made room for python3.14, nodejs24.x and
# ruby3.4. The tag only filters list-layers and the console: the layer
# attaches to a function on any runtime, and COMPATIBLE_RUNTIMES replaces
# the list.
readonly default_runtimes="provided.al2023 provided.al2
python3.14 python3.13 python3.12 python3.11 python3.10
nodejs24.x nodejs22.x
java21 java17 java11
dotnet8
ruby3.4 ruby3.3"
readonly max_runtimes=15

usage() {
	cat <<'EOF'
Usage: ./deploy.sh [SUBCOMMAND] [--yes]

Subcommands:
  deploy   (default) publish DIST_DIR/o2-extension-<arch>.zip as a new version
           of the layer <LAYER_NAME>-<arch>, for each architecture; print each
           version's ARN and the command that attaches it to a function; record
           the ARNs in DEPLOY_INFO_DIR/deployment-info-<arch>.txt
  list     list every version of the layers
  delete   delete every version of the layers; asks first, or give --yes
           (required when stdin is not a terminal)
  help     print this help

Variables:
  AWS_REGION        the region (default: AWS_DEFAULT_REGION, else the CLI's
                    configuration: aws configure get region)
  AWS_PROFILE       the CLI profile to use (read by the aws CLI itself)
  AWS_ENDPOINT_URL  send every aws call there (e.g. a moto_server for tests)
  DEPLOY_ARCH       x86_64 (or amd64) or arm64 (or aarch64): only that
                    architecture (default: both)
  LAYER_NAME        layer name prefix; the layer is <LAYER_NAME>-<arch>
                    (default: o2-extension, giving o2-extension-x86_64 and
                    o2-extension-arm64)
  COMPATIBLE_RUNTIMES  the runtimes to tag the versions with, space separated,
                    at most 15 (default: provided.al2023, provided.al2,
                    python3.10-3.14, nodejs22.x and 24.x, java11-21,
                    dotnet8, ruby3.3-3.4)
  DIST_DIR          where build.sh put the zips (default: dist)
  DEPLOY_INFO_DIR   where deployment-info-<arch>.txt goes (default: the
                    repository)

Configure the function (recommended: the credential stays in Secrets Manager,
out of the function's configuration):
  aws secretsmanager create-secret --name o2/ingest \
      --secret-string '{"authorization":"Basic <base64 of email:token>"}'
  function variables:
      O2_ORGANIZATION_ID=<org>  O2_ENDPOINT=https://api.openobserve.ai
      O2_AUTHORIZATION_HEADER_SECRET_ARN=<the secret's ARN>
      (or O2_AUTHORIZATION_HEADER_SSM_PARAMETER=<SecureString name or ARN>)
  the function's role: secretsmanager:GetSecretValue on that ARN
      (SSM: ssm:GetParameter on the parameter and kms:Decrypt on its key)
  O2_AUTHORIZATION_HEADER (the value in plain text) is for local runs.
  The README has SAM, CloudFormation and Terraform examples.
EOF
}

die() {
	echo "deploy.sh: $*" >&2
	exit 1
}

# --- arguments ---------------------------------------------------------------

cmd=
yes=false
for arg in "$@"; do
	case $arg in
	-y | --yes) yes=true ;;
	-h | --help) cmd=help ;;
	-*)
		echo "deploy.sh: unknown option \"$arg\"" >&2
		usage >&2
		exit 2
		;;
	*)
		if [[ -n $cmd ]]; then
			echo "deploy.sh: one subcommand at a time (got \"$cmd\" and \"$arg\")" >&2
			usage >&2
			exit 2
		fi
		cmd=$arg
		;;
	esac
done
cmd=${cmd:-deploy}
case $cmd in
deploy | publish | list | delete) ;;
help)
	usage
	exit 0
	;;
*)
	echo "deploy.sh: unknown subcommand \"$cmd\"" >&2
	usage >&2
	exit 2
	;;
esac

case ${DEPLOY_ARCH:-} in
x86_64 | amd64) arches=(x86_64) ;;
arm64 | aarch64) arches=(arm64) ;;
"" | all | both) arches=(x86_64 arm64) ;;
*) die "DEPLOY_ARCH=\"$DEPLOY_ARCH\": want x86_64 (or amd64) or arm64 (or aarch64), or unset for both" ;;
esac

prefix=${LAYER_NAME:-$name}
# Lambda's layer names: letters, digits, - and _, at most 140 characters
# (the longest suffix we add is "-x86_64").
if [[ ! $prefix =~ ^[A-Za-z0-9_-]+$ || ${#prefix} -gt 133 ]]; then
	die "LAYER_NAME=\"$prefix\": a layer name prefix is 1-133 letters, digits, - or _"
fi
layer_name() { printf '%s-%s' "$prefix" "$1"; }

if [[ $cmd == delete && $yes == false && ! -t 0 ]]; then
	die "refusing to delete without --yes: stdin is not a terminal, so nobody can confirm"
fi

# --- preflight: CLI, zips, region, credentials -------------------------------

command -v aws >/dev/null 2>&1 ||
	die "the aws CLI is not installed or not in PATH; install it (https://aws.amazon.com/cli/, or pip install awscli) and run aws configure"

if [[ $cmd == deploy || $cmd == publish ]]; then
	for arch in "${arches[@]}"; do
		zip=$dist/$name-$arch.zip
		[[ -s $zip ]] ||
			die "$zip not found: build it first with ./build.sh (or BUILD_TARGETS=$arch ./build.sh${DIST_DIR:+ with the same DIST_DIR})"
	done
	# Split on blanks and newlines; read -d '' returns 1 at the end.
	runtimes=()
	read -r -d '' -a runtimes <<<"${COMPATIBLE_RUNTIMES-$default_runtimes}" || true
	if ((${#runtimes[@]} > max_runtimes)); then
		die "COMPATIBLE_RUNTIMES names ${#runtimes[@]} runtimes; Lambda accepts at most $max_runtimes"
	fi
fi

# The CLI v2 pages long output through less; a script must not stop there.
export AWS_PAGER=""

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
region_from=AWS_REGION
[[ -n ${AWS_REGION:-} || -z $region ]] || region_from=AWS_DEFAULT_REGION
if [[ -z $region ]]; then
	region=$(aws configure get region 2>/dev/null || true)
	region_from="the CLI's configured region"
fi
[[ -n $region ]] ||
	die "no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1 ./deploy.sh) or run aws configure set region REGION${AWS_PROFILE:+ --profile $AWS_PROFILE}"
# A region name is a partition-style prefix, a direction and a number
# (us-east-1, eu-central-2, us-gov-west-1, cn-north-1); a typo would
# otherwise surface as an unreachable endpoint or, worse, as bad
# credentials.
if [[ ! $region =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
	die "$region_from \"$region\" is not a region name (e.g. us-east-1, eu-west-1, ap-southeast-2)"
fi

# Every call names the region, and the endpoint when one is set: the aws
# CLI v1 does not read AWS_ENDPOINT_URL itself. A failed call stops the
# script with exit 1, like every other failure (the CLI itself exits 252,
# 253, 254 or 255), naming the call; the CLI has printed why.
aws_opts=(--region "$region")
if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
	aws_opts+=(--endpoint-url "$AWS_ENDPOINT_URL")
fi
awscli() {
	local rc=0
	aws "$@" "${aws_opts[@]}" || rc=$?
	if ((rc != 0)); then
		die "aws $1 $2 failed (exit $rc) in region $region${AWS_ENDPOINT_URL:+ at $AWS_ENDPOINT_URL}; see the CLI's message above"
	fi
}

if ! ident=$(aws sts get-caller-identity --query '[Account,Arn]' --output text "${aws_opts[@]}" 2>&1); then
	# The CLI's message is its last non-empty line. Say what failed: a
	# network or endpoint problem is not a credentials problem.
	msg=$(printf '%s\n' "$ident" | sed '/^[[:space:]]*$/d' | tail -n 1)
	case $msg in
	*"Could not connect to the endpoint URL"* | *"Connect timeout"* | *"Read timeout"* | *"Connection was closed"* | *"Failed to resolve"* | *"Name or service not known"* | *"SSL validation failed"*)
		die "cannot reach AWS STS in region $region${AWS_ENDPOINT_URL:+ at $AWS_ENDPOINT_URL} (aws sts get-caller-identity: $msg)
  Check AWS_REGION${AWS_ENDPOINT_URL:+ and AWS_ENDPOINT_URL}, and the network (proxy, VPN, firewall)."
		;;
	*"Unable to locate credentials"* | *"InvalidClientTokenId"* | *"SignatureDoesNotMatch"* | *"ExpiredToken"* | *"security token"* | *"AuthFailure"* | *"could not be found"* | *"profile"*)
		die "no usable AWS credentials (aws sts get-caller-identity: $msg)
  Configure them with aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
		;;
	*)
		die "aws sts get-caller-identity failed in region $region: $msg"
		;;
	esac
fi
read -r account identity <<<"$ident"
echo "==> account $account as $identity, region $region${AWS_PROFILE:+, profile $AWS_PROFILE}${AWS_ENDPOINT_URL:+, endpoint $AWS_ENDPOINT_URL}"

# --- subcommands -------------------------------------------------------------

# record_arn keeps DEPLOY_INFO_DIR/deployment-info-ARCH.txt listing the
# latest version of each layer in each region: it replaces the line of the
# same layer and region, and keeps the others.
record_arn() {
	local arch=$1 arn=$2 version=$3
	local file=$info_dir/deployment-info-$arch.txt tmp
	mkdir -p "$info_dir"
	tmp=$(mktemp "$file.XXXXXX")
	{
		echo "# o2-extension layer versions for $arch, written by deploy.sh: REGION LAYER_VERSION_ARN O2_EXTENSION_VERSION"
		if [[ -f $file ]]; then
			grep -v -e '^#' -e "^$region ${arn%:*}:" "$file" || true
		fi
		printf '%s %s %s\n' "$region" "$arn" "$version"
	} >"$tmp"
	mv -f "$tmp" "$file"
}

deploy() {
	local arch layer zip version size desc arn
	# The ${a[@]+...} form keeps an empty list legal under set -u in
	# bash 3.2, which macOS still ships.
	local -a rt_opts=()
	if ((${#runtimes[@]} > 0)); then
		rt_opts=(--compatible-runtimes "${runtimes[@]}")
	fi
	for arch in "${arches[@]}"; do
		layer=$(layer_name "$arch")
		zip=$dist/$name-$arch.zip
		version=unknown
		if [[ -f $dist/$name-$arch.version ]]; then
			read -r version <"$dist/$name-$arch.version" || true
		fi
		size=$(wc -c <"$zip")
		desc="$name $version for $arch: ships function logs and platform telemetry to OpenObserve"
		echo "==> publishing $zip ($((size / 1024)) KiB, $name $version) as $layer"
		arn=$(awscli lambda publish-layer-version \
			--layer-name "$layer" \
			--description "$desc" \
			--zip-file "fileb://$zip" \
			--compatible-architectures "$arch" \
			${rt_opts[@]+"${rt_opts[@]}"} \
			--query LayerVersionArn --output text)
		record_arn "$arch" "$arn" "$version"
		cat <<EOF
    $arn
    Attach it to a function of architecture $arch (--layers replaces the
    function's whole layer list: name the layers it already has too):
    aws lambda update-function-configuration --region $region --function-name YOUR_FUNCTION --layers $arn
    Then set O2_ORGANIZATION_ID and O2_AUTHORIZATION_HEADER_SECRET_ARN on the
    function (./deploy.sh help shows how).
    Recorded in $info_dir/deployment-info-$arch.txt
EOF
	done
}

# forget_arns removes the deleted ARNs ($@) of this region from every
# DEPLOY_INFO_DIR/deployment-info-ARCH.txt, so that no file points at a
# version that is gone; a file left with no entry is removed.
forget_arns() {
	local arch file tmp
	for arch in "${arches[@]}"; do
		file=$info_dir/deployment-info-$arch.txt
		[[ -f $file ]] || continue
		tmp=$(mktemp "$file.XXXXXX")
		awk -v region="$region" -v gone="$*" '
			BEGIN { n = split(gone, g, " "); for (i = 1; i <= n; i++) del[g[i]] = 1 }
			$1 == region && ($2 in del) { next }
			{ print }
		' "$file" >"$tmp"
		if grep -qv '^#' "$tmp"; then
			mv -f "$tmp" "$file"
		else
			rm -f "$tmp" "$file" # only the header was left
		fi
	done
}

# version_arns prints the ARNs of a layer's versions, one a line, newest
# first. An unknown layer has no versions (Lambda answers an empty list).
version_arns() {
	awscli lambda list-layer-versions --layer-name "$1" \
		--query 'LayerVersions[].LayerVersionArn' --output text | tr -s '[:space:]' '\n' | sed '/^$/d'
}

list() {
	local arch layer out ver created arn desc
	for arch in "${arches[@]}"; do
		layer=$(layer_name "$arch")
		echo "==> $layer ($region)"
		out=$(awscli lambda list-layer-versions --layer-name "$layer" \
			--query 'LayerVersions[].[Version,CreatedDate,LayerVersionArn,Description]' --output text)
		if [[ -z $out ]]; then
			echo "    (no versions)"
			continue
		fi
		while IFS=$'\t' read -r ver created arn desc; do
			printf '    %-4s %s  %s\n         %s\n' "$ver" "$created" "$arn" "$desc"
		done <<<"$out"
	done
}

delete() {
	local arch arns arn answer
	local -a todo=()
	for arch in "${arches[@]}"; do
		# Assigned first: a failing aws call then stops the script (set -e),
		# where inside "for arn in $(...)" it would pass for "no versions".
		arns=$(version_arns "$(layer_name "$arch")")
		for arn in $arns; do
			todo+=("$arn")
		done
	done
	if ((${#todo[@]} == 0)); then
		echo "==> nothing to delete: no versions of $(for arch in "${arches[@]}"; do printf '%s ' "$(layer_name "$arch")"; done)in $region"
		return
	fi
	echo "==> to delete in $region (functions that use them keep working; new attachments fail):"
	printf '    %s\n' "${todo[@]}"
	if [[ $yes == false ]]; then
		read -r -p "Delete these ${#todo[@]} layer versions? [y/N] " answer || true
		[[ $answer == [yY] || $answer == [yY][eE][sS] ]] || die "not confirmed: nothing deleted"
	fi
	local -a done_arns=()
	for arn in "${todo[@]}"; do
		# The layer's ARN is the version's without the last :N.
		if ! (awscli lambda delete-layer-version --layer-name "${arn%:*}" --version-number "${arn##*:}"); then
			# Keep the files true to what still exists, then stop.
			((${#done_arns[@]} == 0)) || forget_arns "${done_arns[@]}"
			exit 1
		fi
		done_arns+=("$arn")
		echo "    deleted $arn"
	done
	forget_arns "${done_arns[@]}"
}

case $cmd in
deploy | publish) deploy ;;
list) list ;;
delete) delete ;;
esac
